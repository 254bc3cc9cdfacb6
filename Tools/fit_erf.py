#!/usr/bin/env python3
"""Fits the coefficients of Graft's vectorisable erf, GELU, GELU-derivative and exp kernels.

Rerun (numpy and mpmath; both come with the Tools venv, `pip install numpy mpmath` elsewhere):

    /work/main/Tools/.venv/bin/python Tools/fit_erf.py

It prints the float32 coefficient tables pasted into Sources/GraftTensor/FastMath.swift and
Sources/CKernels/kernels.c, and the worst errors of each approximation evaluated the way the
kernels evaluate it (float32 Horner with fused multiply-adds, one float32 division), so the printed
bounds are the ones the unit tests assert with a little slack.

Method. Each odd function F is written F(x) = x * g(x^2) and g(z) ~ P(z) / Q(z) is fitted on
z in [0, c^2] (x clamped to [-c, c] where F has saturated to float precision). The rational fit is
linearised (minimise sum w_i (P(z_i) - g_i Q(z_i))^2 / Q_prev(z_i)^2, Loeb's iteration) in a
Chebyshev basis for conditioning, and Lawson's reweighting (w_i <- w_i |error_i|) drives the
least-squares fit towards the minimax (equioscillating) one. The result is converted to monomials
in z, rounded to float32 and checked in emulated float32 arithmetic. exp's polynomial on
[-ln2/2, ln2/2] is fitted the same way (Q = 1) with its constant term pinned to 1.
"""

import math

import mpmath
import numpy as np
from numpy.polynomial import chebyshev as cheb

mpmath.mp.dps = 40
F32 = np.float32


def fit_rational(g, weight, xs, zmax, m, n, iterations=200):
    """Near-minimax weighted fit of g(z) by P(z)/Q(z), deg P = m, deg Q = n; returns monomials."""
    z = xs * xs
    t = 2 * z / zmax - 1
    gv = np.array([g(x) for x in xs])
    wv = np.array([weight(x) for x in xs])
    vp, vq = cheb.chebvander(t, m), cheb.chebvander(t, n)
    q_prev = np.ones_like(t)
    lawson = np.full_like(t, 1 / len(t))
    best = None
    for _ in range(iterations):
        s = np.sqrt(lawson) * wv / q_prev
        a = np.hstack([vp * s[:, None], -(vq[:, 1:] * (gv * s)[:, None])])
        sol, *_ = np.linalg.lstsq(a, gv * s * vq[:, 0], rcond=None)
        p, q = sol[: m + 1], np.concatenate([[1.0], sol[m + 1 :]])
        pv, qv = cheb.chebval(t, p), cheb.chebval(t, q)
        err = wv * (pv / qv - gv)
        worst = np.max(np.abs(err))
        if best is None or worst < best[0]:
            best = (worst, p.copy(), q.copy())
        q_prev = qv
        lawson = lawson * np.abs(err)
        lawson /= lawson.sum()
    worst, p, q = best
    # Chebyshev in t = 2z/zmax - 1 -> monomials in z; normalise Q(0) = 1.
    pm = cheb.cheb2poly(p)
    qm = cheb.cheb2poly(q)
    pz = np.polynomial.polynomial.Polynomial(pm)(np.polynomial.polynomial.Polynomial([-1, 2 / zmax]))
    qz = np.polynomial.polynomial.Polynomial(qm)(np.polynomial.polynomial.Polynomial([-1, 2 / zmax]))
    pc, qc = pz.coef / qz.coef[0], qz.coef / qz.coef[0]
    # The denominator must keep one sign on the interval (no poles).
    zz = np.linspace(0, zmax, 20001)
    assert np.min(np.polynomial.polynomial.polyval(zz, qc)) > 0, "denominator has a root"
    return worst, pc, qc


def fma32(a, b, c):
    """float32 fused multiply-add, emulated in float64 (the product of two floats is exact)."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(F32)


def horner32(coef32, z):
    acc = np.full_like(z, coef32[-1])
    for c in coef32[-2::-1]:
        acc = fma32(acc, z, np.full_like(z, c))
    return acc


def odd_rational32(p32, q32, x, clamp):
    """The kernels' evaluation: u = clamp(x), z = u*u, u * P(z) / Q(z), all float32."""
    u = np.clip(x.astype(F32), F32(-clamp), F32(clamp))
    z = (u * u).astype(F32)
    return ((u * horner32(p32, z)).astype(F32) / horner32(q32, z)).astype(F32)


def sample(c, count=6000):
    """Points in (0, c]: uniform plus Chebyshev-clustered at both ends, and a few tiny ones."""
    k = np.arange(count)
    xs = np.concatenate(
        [
            np.linspace(0, c, count),
            c * (1 - np.cos(np.pi * (k + 0.5) / (2 * count))),
            c * np.sin(np.pi * (k + 0.5) / (2 * count)),
            [1e-6, 1e-4, 1e-3],
        ]
    )
    return np.unique(xs[xs > 0])


def fmt(values):
    """Shortest decimal strings that round-trip through float32 (for Swift and C literals)."""
    return ", ".join(np.format_float_scientific(F32(v), unique=True, trim="-") for v in values)


def erf_tables():
    # Clamp where erf(x) rounds to 1 in float32 (erfc(x) < 2^-25), so erf(±clamp) = ±1 exactly.
    c = 3.92
    print(f"erfc({c}) = {float(mpmath.erfc(c)):.3e}  (2^-25 = {2.0**-25:.3e})")
    worst, p, q = fit_rational(
        lambda x: math.erf(x) / x, lambda x: x / math.erf(x), sample(c), c * c, 5, 5
    )
    print(f"erf: x P5(x^2)/Q5(x^2) on [0, {c}], fitted relative error {worst:.2e}")
    p32, q32 = p.astype(F32), q.astype(F32)
    print("  P (z^0 first):", fmt(p32))
    print("  Q (z^0 first):", fmt(q32))
    xs = np.concatenate([np.linspace(-6, 6, 2_000_001), np.linspace(-1e-3, 1e-3, 20001)]).astype(F32)
    ref = np.array([math.erf(float(x)) for x in xs])
    got = odd_rational32(p32, q32, xs, c).astype(np.float64)
    absolute = np.max(np.abs(got - ref))
    nz = ref != 0
    relative = np.max(np.abs(got[nz] - ref[nz]) / np.abs(ref[nz]))
    print(f"  float32 evaluation: max |error| {absolute:.2e}, max relative error {relative:.2e}")
    end = odd_rational32(p32, q32, np.array([c, 100], dtype=F32), c)
    print("  erf(clamp), erf(100):", end.tolist(), " max over [3, 6]:",
          float(np.max(odd_rational32(p32, q32, np.linspace(3, 6, 400001).astype(F32), c))))

    # GELU: x Phi(x) = h + h erf(x/sqrt2), h = x/2; the same fit in the variable x/sqrt2.
    s = 1 / math.sqrt(2)
    cg = c / s
    worst, p, q = fit_rational(
        lambda x: math.erf(x * s) / x, lambda x: x / math.erf(x * s), sample(cg), cg * cg, 5, 5
    )
    print(f"gelu: erf(x/sqrt2) = x P5/Q5 on [0, {cg:.6f}], fitted relative error {worst:.2e}")
    p32, q32 = p.astype(F32), q.astype(F32)
    print(f"  clamp {float(F32(cg))!r}")
    print("  P (z^0 first):", fmt(p32))
    print("  Q (z^0 first):", fmt(q32))
    xs = np.linspace(-10, 10, 2_000_001).astype(F32)
    e = odd_rational32(p32, q32, xs, F32(cg))
    h = (xs * F32(0.5)).astype(F32)
    gelu = fma32(h, e, h).astype(np.float64)
    ref = np.array([float(x) * 0.5 * math.erfc(-float(x) * s) for x in xs])
    err = np.abs(gelu - ref) / np.maximum(np.abs(xs.astype(np.float64)), 1)
    print(f"  gelu float32: max |error| / max(|x|, 1) = {np.max(err):.2e}")
    far = np.array([-cg, -100, -1e30], dtype=F32)
    e = odd_rational32(p32, q32, far, F32(cg))
    print("  gelu(-clamp), gelu(-100), gelu(-1e30):", fma32(far * F32(0.5), e, far * F32(0.5)).tolist())
    ends = odd_rational32(p32, q32, np.array([-100, 100], dtype=F32), F32(cg))
    print("  erf(∓clamp/sqrt2) in the gelu form:", ends.tolist())


def gelu_derivative_table():
    # d/dx x Phi(x) = Phi(x) + x phi(x) = 1/2 + x R(x^2), saturated to about 1e-8 beyond |x| = 6.2.
    # The clamp is the first candidate whose float32 values at +-clamp are exactly 1 and 0, so the
    # gradient is exactly g for x -> +inf and 0 for x -> -inf.
    def f(x):
        x = mpmath.mpf(x)
        return float(mpmath.ncdf(x) + x * mpmath.npdf(x))

    for c in (6.2, 6.25, 6.3, 6.35, 6.4):
        worst, p, q = fit_rational(
            lambda x: (f(x) - 0.5) / x, lambda x: x, sample(c, 3000), c * c, 7, 6
        )
        p32, q32 = p.astype(F32), q.astype(F32)
        ends = odd_rational32(p32, q32, np.array([-c, c], dtype=F32), F32(c)) + F32(0.5)
        print(f"clamp {c}: 1 - gelu'(clamp) = {1 - f(c):.2e}, float32 values at -+clamp {ends.tolist()}")
        if ends.tolist() == [0.0, 1.0]:
            break
    print(f"gelu': 1/2 + x P7/Q6 on [0, {c}], fitted absolute error {worst:.2e}")
    print("  P (z^0 first):", fmt(p32))
    print("  Q (z^0 first):", fmt(q32))
    xs = np.linspace(-12, 12, 400_001).astype(F32)
    got = (odd_rational32(p32, q32, xs, F32(c)) + F32(0.5)).astype(np.float64)
    ref = np.array([f(float(x)) for x in xs])
    print(f"  float32 evaluation: max |error| {np.max(np.abs(got - ref)):.2e}")


def exp_table():
    # e^r on |r| <= ln2/2 by a degree-6 polynomial with p(0) = 1, relative minimax.
    half = math.log(2) / 2
    r = np.concatenate([np.linspace(-half, half, 20001), half * np.cos(np.linspace(0, np.pi, 2001))])
    target = np.exp(r)
    v = np.vander(r, 7, increasing=True)[:, 1:]
    lawson = np.full_like(r, 1 / len(r))
    best = None
    for _ in range(300):
        s = np.sqrt(lawson) / target
        sol, *_ = np.linalg.lstsq(v * s[:, None], (target - 1) * s, rcond=None)
        err = (1 + v @ sol - target) / target
        worst = np.max(np.abs(err))
        if best is None or worst < best[0]:
            best = (worst, sol.copy())
        lawson = lawson * np.abs(err)
        lawson /= lawson.sum()
    worst, sol = best
    c32 = np.concatenate([[1.0], sol]).astype(F32)
    print(f"exp: degree-6 polynomial on |r| <= ln2/2, fitted relative error {worst:.2e}")
    print("  c (r^0 first):", fmt(c32))
    rr = np.linspace(-half, half, 200001).astype(F32)
    got = horner32(c32, rr).astype(np.float64)
    print(f"  float32 evaluation: max relative error {np.max(np.abs(got / np.exp(rr.astype(np.float64)) - 1)):.2e}")


if __name__ == "__main__":
    erf_tables()
    print()
    gelu_derivative_table()
    print()
    exp_table()
