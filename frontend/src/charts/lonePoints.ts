/**
 * Which points of a series a line cannot show: a curve of one point (a run that exploded
 * at its first logged step) or a point between two gaps (NaN on both sides) draws no
 * line segment at all, so the charts mark those points with a dot instead.
 */

/**
 * Indices of the lone points of `col` (null/undefined/non-finite entries are gaps).
 *
 * With `spanGaps` the line bridges gaps, so only a series with a single point has a lone
 * one; without it, a point is lone when neither neighbour is a number.
 */
export function lonePointIndices(col: ArrayLike<number | null | undefined>, spanGaps: boolean): number[] {
  const ok = (i: number): boolean => {
    const v = col[i];
    return typeof v === "number" && Number.isFinite(v);
  };
  const present: number[] = [];
  for (let i = 0; i < col.length; i++) if (ok(i)) present.push(i);
  if (spanGaps) return present.length === 1 ? present : [];
  return present.filter((i) => !(i > 0 && ok(i - 1)) && !(i + 1 < col.length && ok(i + 1)));
}
