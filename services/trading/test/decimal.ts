/**
 * Exact decimal arithmetic for test expectations: values are BigInts scaled by 10^scale, never floats.
 * `averagePriceAfterBuy` is the exact value the BUY query in src/trades/sql.ts must produce.
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

/**
 * The position's average price after a BUY: (q * avg + dq * price) / (q + dq), rounded once, half up,
 * to 8 decimals, as the BUY query in src/trades/sql.ts computes it. Arguments and result are units of 10^-8.
 */
export function averagePriceAfterBuy(
  quantity: bigint,
  average: bigint,
  bought: bigint,
  price: bigint,
): bigint {
  const cost = quantity * average + bought * price; // units of 10^-16
  return divideRounded(cost, quantity + bought); // units of 10^-16 / 10^-8 = 10^-8
}
