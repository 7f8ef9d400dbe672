/**
 * Marching squares: the line segments where a sampled field crosses `level`,
 * used to draw the crisp decision boundary (P = 0.5) over the region heat map.
 */

/** A segment [x0, y0, x1, y1] in grid coordinates (pixel centres are at i + 0.5). */
export type Segment = [number, number, number, number];

/**
 * Segments of the iso-line `level` of a w x h row-major field.
 * Saddle cells are resolved by the cell's mean value.
 */
export function contourSegments(v: ArrayLike<number>, w: number, h: number, level: number): Segment[] {
  const out: Segment[] = [];
  const at = (x: number, y: number): number => v[y * w + x]!;
  const lerp = (a: number, b: number): number => {
    const d = b - a;
    return Math.abs(d) < 1e-12 ? 0.5 : (level - a) / d;
  };
  for (let y = 0; y < h - 1; y++) {
    for (let x = 0; x < w - 1; x++) {
      const a = at(x, y); // top-left
      const b = at(x + 1, y); // top-right
      const c = at(x + 1, y + 1); // bottom-right
      const d = at(x, y + 1); // bottom-left
      const code = (a > level ? 8 : 0) | (b > level ? 4 : 0) | (c > level ? 2 : 0) | (d > level ? 1 : 0);
      if (code === 0 || code === 15) continue;
      const cx = x + 0.5;
      const cy = y + 0.5;
      const top: [number, number] = [cx + lerp(a, b), cy];
      const right: [number, number] = [cx + 1, cy + lerp(b, c)];
      const bottom: [number, number] = [cx + lerp(d, c), cy + 1];
      const left: [number, number] = [cx, cy + lerp(a, d)];
      const seg = (p: [number, number], q: [number, number]): void => {
        out.push([p[0], p[1], q[0], q[1]]);
      };
      switch (code) {
        case 1: case 14: seg(left, bottom); break;
        case 2: case 13: seg(bottom, right); break;
        case 3: case 12: seg(left, right); break;
        case 4: case 11: seg(top, right); break;
        case 6: case 9: seg(top, bottom); break;
        case 7: case 8: seg(left, top); break;
        case 5: case 10: {
          const mid = (a + b + c + d) / 4 > level;
          if ((code === 5) === mid) {
            seg(left, top);
            seg(bottom, right);
          } else {
            seg(left, bottom);
            seg(top, right);
          }
          break;
        }
      }
    }
  }
  return out;
}
