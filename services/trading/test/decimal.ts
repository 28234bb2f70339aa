/**
 * Exact decimal arithmetic for test expectations: values are BigInts scaled by 10^scale, never floats.
 * `averagePriceAfterBuy` mirrors PostgreSQL's numeric rules for the BUY query in src/trades/sql.ts.
 */

const SCALE = 8;
const TEN = 10n;

/** Parses a non-negative decimal string with at most 8 decimals into units of 10^-8. */
export function parseDecimal(text: string): bigint {
  const match = /^(\d+)(?:\.(\d{1,8}))?$/.exec(text);
  if (match === null) throw new Error(`not a decimal with at most 8 decimals: ${text}`);
  const [, whole = '', fraction = ''] = match;
  return BigInt(whole) * TEN ** BigInt(SCALE) + BigInt(fraction.padEnd(SCALE, '0'));
}

/** Formats units of 10^-8 the way `trim_scale(x)::text` does: no trailing zeros, no trailing dot. */
export function formatDecimal(units: bigint): string {
  if (units < 0n) throw new Error('negative');
  const whole = units / TEN ** BigInt(SCALE);
  const fraction = (units % TEN ** BigInt(SCALE)).toString().padStart(SCALE, '0').replace(/0+$/, '');
  return fraction === '' ? whole.toString() : `${whole}.${fraction}`;
}

/** numerator / denominator (both positive) rounded half away from zero to an integer. */
function divideRounded(numerator: bigint, denominator: bigint): bigint {
  const quotient = numerator / denominator;
  return 2n * (numerator % denominator) >= denominator ? quotient + 1n : quotient;
}

/** Weight and first digit of units / 10^scale in base 10000, as PostgreSQL's NumericVar holds it. */
function base10000(units: bigint, scale: number): { weight: number; first: bigint } {
  const digitAt = (weight: number) =>
    weight >= 0
      ? units / (TEN ** BigInt(scale) * 10000n ** BigInt(weight))
      : (units * 10000n ** BigInt(-weight)) / TEN ** BigInt(scale);
  let weight = 0;
  while (digitAt(weight) >= 10000n) weight++;
  while (digitAt(weight) === 0n) weight--;
  return { weight, first: digitAt(weight) };
}

/** PostgreSQL's select_div_scale (numeric.c): the scale numeric division rounds its quotient to. */
function divisionScale(
  dividend: bigint,
  dividendScale: number,
  divisor: bigint,
  divisorScale: number,
): number {
  const a = base10000(dividend, dividendScale);
  const b = base10000(divisor, divisorScale);
  let quotientWeight = a.weight - b.weight;
  if (a.first <= b.first) quotientWeight--;
  const NUMERIC_MIN_SIG_DIGITS = 16;
  const DEC_DIGITS = 4;
  return Math.min(
    Math.max(NUMERIC_MIN_SIG_DIGITS - quotientWeight * DEC_DIGITS, dividendScale, divisorScale, 0),
    1000,
  );
}

/**
 * The position's average price after a BUY, exactly as
 * `round((q * avg + dq * price) / (q + dq), 8)` computes it on numeric(24,8) columns: the products are
 * exact (scale 16), the division is rounded half away from zero to select_div_scale's scale, then
 * round(..., 8) rounds half away from zero again. All arguments and the result are units of 10^-8.
 */
export function averagePriceAfterBuy(
  quantity: bigint,
  average: bigint,
  bought: bigint,
  price: bigint,
): bigint {
  const dividend = quantity * average + bought * price; // scale 16
  const divisor = quantity + bought; // scale 8
  const scale = divisionScale(dividend, 2 * SCALE, divisor, SCALE);
  // dividend / 10^16 / (divisor / 10^8), rounded to `scale` decimals
  const quotient = divideRounded(dividend * TEN ** BigInt(scale), divisor * TEN ** BigInt(SCALE));
  return divideRounded(quotient, TEN ** BigInt(scale - SCALE));
}
