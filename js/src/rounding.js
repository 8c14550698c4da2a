/**
 * Python's rounding, in JavaScript: `round(x)` and `round(x, digits)` round half to even on
 * the exact binary value, where `Math.round` rounds half up and `toFixed` half away from zero.
 * The letterbox size and every number of a result's `toDict()` go through these, so they are
 * the Python runtime's to the last digit.
 *
 * @module rounding
 */

/**
 * Python's `round(x)`: the nearest integer, ties to the even one.
 * @param {number} x
 * @returns {number}
 */
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Python's `round(x, digits)` for a float: the decimal with `digits` decimals nearest to the
 * exact value of `x`, ties to the even last digit, read back as a number.
 * @param {number} x
 * @param {number} digits  0..20
 * @returns {number}
 */
export function roundDecimals(x, digits) {
  if (!Number.isFinite(x)) return x;
  const rounded = Number(x.toFixed(digits)); // ties away from zero
  // A tie is a value whose exact decimal expansion is ...5000... right after `digits`:
  // toFixed(100) writes that expansion in full for any |x| >= 2^-48 (smaller values round to
  // 0 at the few digits used here, and cannot be ties).
  if (Math.abs(x) < 1e21 && Math.abs(x) >= 2 ** -48) {
    const exact = Math.abs(x).toFixed(100);
    const tail = exact.slice(exact.indexOf('.') + 1 + digits);
    if (/^50*$/.test(tail)) {
      const scaled = Math.abs(x).toFixed(digits).replace('.', '');
      const lastDigit = Number(scaled[scaled.length - 1]);
      if (lastDigit % 2 === 1) { // toFixed went up to an odd digit: the even one is below
        const step = 10 ** -digits;
        const down = Number((Math.abs(x) - step / 2).toFixed(digits));
        return Math.sign(x) * down;
      }
    }
  }
  return rounded === 0 ? 0 : rounded; // no -0
}
