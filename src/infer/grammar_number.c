/*
 * Bounded numbers for the grammar matcher: can a number typed so far still
 * become a value within [lo, hi] with exactly k more bytes, and how many
 * bytes at least does it need?
 *
 * Values are integers scaled by 10^scale (0 for "integer", 6 for "number"
 * with bounds), written without exponent. A prefix stands for a set of
 * values: with more integer digits, [v*10^k, (v+1)*10^k) scaled; after the
 * point with d fraction digits, a grid of step 10^(scale-d-j) for j more
 * digits. Each such set is a grid, and a grid meets [lo, hi] when its first
 * point at or above lo is at most hi: exact arithmetic in 128 bits.
 */
#include "infer/grammar_internal.h"

#define MAX_NUM_MORE 40
#define MAX_INT_DIGITS 18 /* as grammar_match.c */

typedef __int128 i128;

static i128 pow10i(int k) {
    i128 r = 1;
    while (k-- > 0) r *= 10;
    return r;
}

/* some value base + t*step (0 <= t < count) in [lo, hi] */
static bool grid_ok(i128 base, i128 step, i128 count, i128 lo, i128 hi) {
    i128 top_v = base + (count - 1) * step;
    i128 a = lo > base ? lo : base, b = hi < top_v ? hi : top_v;
    if (a > b) return false;
    i128 t = (a - base + step - 1) / step;
    return base + t * step <= b;
}

int g_num_max_int_digits(const gnode *n) { return n->int_only ? MAX_INT_DIGITS : 12; }

/* can the number be completed with exactly k more bytes, within bounds? */
bool g_num_complete_in(const gnode *n, const numpos *p, int k) {
    i128 lo = n->lo, hi = n->hi, L, H;
    if (p->neg) {
        if (lo > 0) return false;
        L = hi < 0 ? -hi : 0;
        H = -lo;
    } else {
        if (hi < 0) return false;
        L = lo > 0 ? lo : 0;
        H = hi;
    }
    const int scale = n->scale, maxi = g_num_max_int_digits(n);
    const i128 S = pow10i(scale);
    switch (p->sub) {
    case N_MINUS:
        if (k < 1) return false;
        for (int d = 0; d <= 9; d++) {
            numpos q = {d ? N_INT : N_ZERO, 1, 0, p->neg, d};
            if (g_num_complete_in(n, &q, k - 1)) return true;
        }
        return false;
    case N_ZERO:
        if (k == 0) return L <= 0;
        if (scale == 0 || k < 2 || k - 1 > scale) return false;
        return grid_ok(0, pow10i(scale - (k - 1)), pow10i(k - 1), L, H);
    case N_INT:
        if (p->int_digits + k <= maxi && grid_ok((i128)p->mant * pow10i(k) * S, S, pow10i(k), L, H)) return true;
        for (int a = 0; scale && a + 2 <= k; a++) {
            int b = k - a - 1;
            if (b < 1 || b > scale || p->int_digits + a > maxi) continue;
            if (grid_ok((i128)p->mant * pow10i(a) * S, pow10i(scale - b), pow10i(a + b), L, H)) return true;
        }
        return false;
    case N_DOT:
        if (k < 1 || k > scale) return false;
        return grid_ok((i128)p->mant * S, pow10i(scale - k), pow10i(k), L, H);
    case N_FRAC:
        if (p->frac_digits + k > scale) return false;
        return grid_ok((i128)p->mant * pow10i(scale - p->frac_digits), pow10i(scale - p->frac_digits - k), pow10i(k),
                       L, H);
    default: return false;
    }
}

int g_num_min_more(const gnode *n, const numpos *p) {
    for (int k = 0; k <= MAX_NUM_MORE; k++)
        if (g_num_complete_in(n, p, k)) return k;
    return -1;
}

uint32_t g_number_minlen(const gnode *n) {
    if (!n->bounded) return 1;
    int best = -1;
    for (int c = -1; c <= 9; c++) {
        numpos p = {c < 0 ? N_MINUS : c == 0 ? N_ZERO : N_INT, c > 0, 0, c < 0, c > 0 ? c : 0};
        int m = g_num_min_more(n, &p);
        if (m >= 0 && (best < 0 || m + 1 < best)) best = m + 1;
    }
    return best < 0 ? G_INF : (uint32_t)best;
}

