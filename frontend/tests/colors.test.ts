import assert from "node:assert/strict";
import { test } from "node:test";
import { hexToRgb } from "../src/viz/colormap";
import { MIN_CHART_CONTRAST, contrastRatio, ensureContrast, mixRgb, regionTint, relativeLuminance, rgbHex, type Rgb } from "../src/viz/contrast";
import { DEFAULTS } from "../src/viz/theme";

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];

test("relative luminance and contrast follow WCAG 2's reference values", () => {
  assert.equal(relativeLuminance(BLACK), 0);
  assert.equal(relativeLuminance(WHITE), 1);
  assert.equal(contrastRatio(BLACK, WHITE), 21);
  assert.equal(contrastRatio(WHITE, BLACK), 21, "symmetric");
  // #767676 is the classic lightest grey with 4.5:1 on white (WebAIM: 4.54)
  assert.ok(Math.abs(contrastRatio(hexToRgb("#767676"), WHITE) - 4.54) < 0.01);
  // pure sRGB primaries: luminance = their coefficient
  assert.ok(Math.abs(relativeLuminance([0, 255, 0]) - 0.7152) < 1e-9);
  // the measurement: the old orange class colour on white was 2.2:1 (below 3)
  assert.ok(contrastRatio(hexToRgb("#f59322"), WHITE) < 2.4);
});

test("mixRgb and rgbHex", () => {
  assert.deepEqual(mixRgb(BLACK, WHITE, 0.5), [128, 128, 128]);
  assert.deepEqual(mixRgb(BLACK, WHITE, 2), [255, 255, 255], "t is clamped");
  assert.equal(rgbHex([8, 119, 189]), "#0877bd");
});

test("ensureContrast darkens on light backgrounds, lightens on dark ones, and leaves good colours alone", () => {
  const yellow = hexToRgb("#bcbd22");
  assert.ok(contrastRatio(yellow, WHITE) < 3);
  const onWhite = ensureContrast(yellow, WHITE);
  assert.ok(contrastRatio(onWhite, WHITE) >= MIN_CHART_CONTRAST);
  assert.ok(relativeLuminance(onWhite) < relativeLuminance(yellow), "darker on white");
  // just enough (a 1/64 mixing step past 3:1, not black): the hue stays as strong as it can
  assert.ok(contrastRatio(onWhite, WHITE) < 3.3, `overshot: ${contrastRatio(onWhite, WHITE)}`);

  const navy = hexToRgb("#1e3a8a");
  const darkBg = hexToRgb("#15181f");
  const onDark = ensureContrast(navy, darkBg);
  assert.ok(contrastRatio(onDark, darkBg) >= MIN_CHART_CONTRAST);
  assert.ok(relativeLuminance(onDark) > relativeLuminance(navy), "lighter on dark");

  const blue = hexToRgb("#0877bd");
  assert.deepEqual(ensureContrast(blue, WHITE), [8, 119, 189], "already 4.8:1: unchanged");
  assert.ok(contrastRatio(ensureContrast(yellow, WHITE, 7), WHITE) >= 7, "any target ratio");
});

test("regionTint keeps every point colour readable on the region, as little washed out as possible", () => {
  for (const [bgHex, theme] of [["#ffffff", "light"], ["#15181f", "dark"]] as const) {
    const bg = hexToRgb(bgHex);
    const points = DEFAULTS[theme].classes.slice(0, 4).map((c) => hexToRgb(c));
    for (const color of points) {
      const tint = regionTint(color, bg, points);
      for (const p of points) assert.ok(contrastRatio(p, tint) >= MIN_CHART_CONTRAST, `${theme}: ${rgbHex(p)} on ${rgbHex(tint)}`);
      // the tint is not the background itself: the region keeps its class's hue
      assert.notDeepEqual(tint, [bg[0], bg[1], bg[2]], `${theme}: ${rgbHex(color)} washed out to the background`);
    }
  }
  // a point colour that cannot reach 3:1 on anything but the far end falls back to the background
  const grey: Rgb = [128, 128, 128];
  assert.deepEqual(regionTint([200, 0, 0], WHITE, [grey, [250, 250, 250]]), [255, 255, 255]);
});

test("the fallback palettes (theme.ts DEFAULTS, mirroring viz.css) reach 3:1 on the page and the panels", () => {
  const backgrounds = { light: ["#ffffff", "#f6f7f9", "#eef0f3"], dark: ["#15181f", "#1b1f27", "#222732", "#000000", "#0b0d12"] } as const;
  for (const theme of ["light", "dark"] as const) {
    const d = DEFAULTS[theme];
    const marks: [string, string][] = [
      ["train", d.train], ["val", d.val], ["lr", d.lr], ["neg", d.neg], ["pos", d.pos],
      ["good", d.good], ["warn", d.warn], ["bad", d.bad],
      ...d.classes.map((c, i): [string, string] => [`class ${i}`, c]),
    ];
    for (const bg of backgrounds[theme]) {
      for (const [name, color] of marks) {
        const ratio = contrastRatio(hexToRgb(color), hexToRgb(bg));
        assert.ok(ratio >= MIN_CHART_CONTRAST, `${theme} ${name} ${color} on ${bg}: ${ratio.toFixed(2)}:1`);
      }
    }
  }
});
