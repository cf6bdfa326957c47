// Countdowns honest to the server.
//
// The server gives every countdown as milliseconds left (`…_in_ms`), computed at some instant
// between the moment our request left (`sentAt`) and the moment its answer arrived
// (`receivedAt`), both read on the browser's clock. Whatever the offset between the two clocks,
// and however long the request took:
// - a deadline after which something EXPIRES (a batch, the candidates, a code) is placed at
//   sentAt + ms: the countdown ends at or before the server's instant, so it never shows time
//   the server will not honour;
// - a deadline before which something may NOT be done (the confirm button of an SMS code, the
//   interval between custom checks, a 429's retry_after_ms) is placed at receivedAt + ms: the
//   button enables at or after the server's instant, so a press is never refused as too early.
// Browser clock jumps are no matter: performance.now() is used between the two.

const perfAt = (browserMs) => performance.now() - (Date.now() - browserMs);

/** A deadline something expires at. */
export function expiresAt(timing, ms) {
  return { at: perfAt(timing.sentAt) + Math.max(0, ms) };
}

/** A deadline something may be done from. */
export function allowedAt(timing, ms) {
  return { at: perfAt(timing.receivedAt) + Math.max(0, ms) };
}

/** Milliseconds left to a deadline (0 once passed). */
export function left(deadline) {
  return deadline ? Math.max(0, deadline.at - performance.now()) : 0;
}

/** Whole seconds left, rounded down for expiries (never more than the server gives). */
export const secondsToExpiry = (deadline) => Math.floor(left(deadline) / 1000);
/** Whole seconds left, rounded up for waits (never enables early). */
export const secondsToWait = (deadline) => Math.ceil(left(deadline) / 1000);

const tickers = new Set();
let timer = null;

/** Calls `fn` now and every 250 ms until it returns false or `stopAll()` runs. */
export function tick(fn) {
  const entry = { fn };
  tickers.add(entry);
  if (fn() === false) tickers.delete(entry);
  if (!timer) {
    timer = setInterval(() => {
      for (const t of [...tickers]) if (t.fn() === false) tickers.delete(t);
      if (!tickers.size) { clearInterval(timer); timer = null; }
    }, 250);
  }
}

/** Stops every countdown (a new screen starts its own). */
export function stopAll() {
  tickers.clear();
}
