// A tollgate plugin in JavaScript: counts a visit to a page under the page's
// lock and answers with the count and the lock's fencing token, as JSON.
//
// Build and run it with ../build-and-run (see guest/README.md, "JavaScript").

// Each WIT interface is a module named after it, with the version of the
// package in ../../../wit (it must match, or the build fails). The `guard`
// resource is the class `Guard` of the lock module; its static `release` is
// `Guard.release(guard)`.
import { acquire } from 'tollgate:coord/lock@0.1.1';
import { incr } from 'tollgate:coord/counter@0.1.1';

// The world's `run` export: `input` is a Uint8Array; return a Uint8Array
// for `ok`, throw a string for `err` (anything else thrown out of `run`
// traps the invocation).
export function run(input) {
    const page = new TextDecoder().decode(input) || 'home';
    // u64 and s64 arguments take a number or a bigint.
    const options = { ttlMs: 5_000, waitMs: 2_000, renew: false };
    let visits, token;
    try {
        // Leaving the block releases the lock (`using` calls the guard's
        // Symbol.dispose); so does a trap or the end of the invocation,
        // whatever the plugin forgot.
        using guard = acquire(`page/${page}`, options);
        visits = incr(`visits/${page}`, 1, undefined);
        token = guard.fencingToken();
    } catch (error) {
        // A tollgate error is a ComponentError whose `payload` is the WIT
        // `error` case: { tag: 'timeout' }, { tag: 'access-denied', val }...
        const failure = error?.payload;
        if (failure?.tag === undefined) throw String(error);
        throw `tollgate: ${failure.tag}${failure.val === undefined ? '' : ` ${failure.val}`}`;
    }
    // s64 and u64 results are bigints, which JSON.stringify refuses: convert
    // them (Number is exact below 2^53; String keeps every digit).
    const answer = { page, visits: Number(visits), fencing_token: Number(token) };
    return new TextEncoder().encode(JSON.stringify(answer));
}
