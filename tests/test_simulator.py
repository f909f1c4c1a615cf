"""Physics tests of the built-in simulator (core/physics/simulate.py).

Each test asserts a property a real spectrum has (or a numerical property the physics relies
on), so it fails if the model breaks: no shape-only checks. Equivalent widths are measured on
Simulator.line_ratio (flux / line-free continuum) with the trapezoid rule, in Angstrom.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from core.physics import lines as line_lists
from core.physics import simulate

# Cenarro et al. (2001, MNRAS 326, 959) Ca II triplet line bandpasses (Angstrom)
CAT_BANDS = ((8484.0, 8513.0), (8522.0, 8562.0), (8642.0, 8682.0))
NA_BAND = (8178.0, 8202.0)          # Na I 8183.3 + 8194.8 (Schiavon et al. 1997 doublet)
PASCHEN_12_16 = {n: w for n, w in line_lists.PASCHEN if 12 <= n <= 16}


@pytest.fixture(scope="module")
def sim64():
    return simulate.Simulator(dtype=torch.float64)


@pytest.fixture(scope="module")
def wave(sim64):
    return sim64.wave.numpy()


def _labels(rows):
    return torch.tensor(rows, dtype=torch.float64)


def _ratio(sim, rows, **kw):
    with torch.no_grad():
        return sim.line_ratio(_labels(rows), **kw).numpy()


def _ew(wave, ratio, lo, hi):
    m = (wave >= lo) & (wave <= hi)
    return np.trapezoid(1.0 - ratio[..., m], wave[m], axis=-1)


def _cat(wave, ratio):
    return sum(_ew(wave, ratio, lo, hi) for lo, hi in CAT_BANDS)


def _width_below(wave, ratio, centre, level):
    """Full width (A) of the region around `centre` where the residual flux is below `level`."""
    fine = np.linspace(centre - 40.0, centre + 40.0, 32001)
    r = np.interp(fine, wave, ratio)
    i0 = int(np.argmin(np.abs(fine - centre)))
    assert r[i0] < level, "line core does not reach the level"
    hi = i0 + int(np.argmax(r[i0:] >= level))
    lo = i0 - int(np.argmax(r[:i0 + 1][::-1] >= level))
    return fine[hi] - fine[lo]


# --------------------------------------------------------------------------- Voigt / Faddeeva
@pytest.mark.parametrize("a", [1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0])
def test_voigt_matches_scipy_voigt_profile(a):
    """H(a, u) = sqrt(pi) * voigt_profile(u; sigma = 1/sqrt2, gamma = a) (Weideman 1994 vs scipy)."""
    u = np.linspace(-60.0, 60.0, 24001)
    ref = math.sqrt(math.pi) * special.voigt_profile(u, 1.0 / math.sqrt(2.0), a)
    h = simulate.voigt_hjerting(torch.tensor(u), torch.full((u.size,), a, dtype=torch.float64)).numpy()
    assert np.max(np.abs(h - ref)) < 3e-7
    far = np.abs(u) >= simulate.U_ASYMPTOTIC
    ha = simulate.voigt_hjerting_asymptotic(torch.tensor(u[far]), torch.full((int(far.sum()),), a,
                                                                            dtype=torch.float64)).numpy()
    assert np.max(np.abs(ha / ref[far] - 1.0)) < 2e-6


def test_voigt_is_normalised():
    """The Voigt-Hjerting function integrates to sqrt(pi) over u (profile area, hence EW, conserved)."""
    u = np.linspace(-3000.0, 3000.0, 600001)
    h = simulate.voigt_hjerting(torch.tensor(u), torch.full((u.size,), 0.05, dtype=torch.float64)).numpy()
    tail = 2 * 0.05 / math.sqrt(math.pi) / 3000.0           # analytic Lorentz tail beyond |u| = 3000
    assert np.trapezoid(h, u) + tail == pytest.approx(math.sqrt(math.pi), rel=1e-5)


# --------------------------------------------------------------------------- sampling / curve of growth
def _exact_ew(S, dd, gam, dsun):
    """Equivalent width of one isolated line from the exact curve of growth (scipy quadrature)."""
    tau0, a = S * dsun / dd, gam / dd

    def depth(u):
        return simulate.LINE_DEPTH_MAX * -np.expm1(-tau0 * special.wofz(u + 1j * a).real)
    val = sum(integrate.quad(depth, lo, hi, limit=400, epsabs=1e-13)[0]
              for lo, hi in ((0, 5), (5, 50), (50, 2000)))
    return 2.0 * dd * val


@pytest.mark.parametrize("wl, labels", [(8327.06, [5772.0, 4.44, 0.0]),      # named Fe I, Sun
                                        (7511.02, [4300.0, 4.8, 0.0]),       # Fe I, cool dwarf (saturated)
                                        (8434.96, [6500.0, 3.0, -1.0]),      # Ti I, warm: weak, unsaturated
                                        (8542.09, [4500.0, 1.5, -2.0])])     # Ca II, metal-poor giant
def test_equivalent_width_matches_curve_of_growth_at_any_subpixel_position(sim64, wave, wl, labels):
    """An isolated line's EW equals the exact curve of growth of its Voigt opacity, whatever its
    position within a pixel (lines are 1-3 km/s wide, pixels 16 km/s: undersampling would make the
    EW jump with the sub-pixel phase, e.g. a radial velocity)."""
    i = int(np.argmin(np.abs(sim64.line_wave.numpy() - wl)))
    mask = torch.zeros(sim64.n_lines, dtype=torch.bool)
    mask[i] = True
    lab = _labels([labels] * 6)
    rv = torch.linspace(0.0, sim64.pixel_kms, 6, dtype=torch.float64)    # one pixel in sub-pixel steps
    with torch.no_grad():
        r = (sim64(lab, rv=rv, line_mask=mask) / sim64(lab, lines=False)).numpy()
        S, dd, gam = (x[0, i].item() for x in sim64.line_params(lab[:1]))
    half = 100.0 if wl > 8540 else 15.0
    ews = _ew(wave, r, wl - half, wl + half)
    exact = _exact_ew(S, dd, gam, sim64.dlam_d_sun[i].item())
    assert exact > 0.002
    assert np.max(np.abs(ews / exact - 1.0)) < 0.01, (ews, exact)


# --------------------------------------------------------------------------- literature trends
def test_solar_calcium_triplet_is_calibrated(sim64, wave):
    """Solar Ca II 8498/8542/8662 equivalent widths near the solar-atlas values (1.3, 3.7, 2.6 A)."""
    ca = sim64.species_mask("Ca II")
    r = _ratio(sim64, [[simulate.T_SUN, simulate.LOGG_SUN, 0.0]], line_mask=ca)[0]
    ews = [_ew(wave, r, c - 30.0, c + 30.0) for c in (8498.02, 8542.09, 8662.14)]
    assert ews == pytest.approx([1.3, 3.7, 2.6], rel=0.1)


def test_cat_strengthens_with_metallicity_and_saturates(sim64, wave):
    """CaT grows with [M/H] in giants and dwarfs, but along a curve of growth: a metal-poor giant
    keeps a few Angstrom (a linear law 10^[M/H] would leave ~0.03 A at [M/H] = -2.5)."""
    mhs = [-2.5, -1.5, -0.5, 0.0, 0.5]
    for teff, logg in ((4500.0, 1.5), (4500.0, 4.6), (5500.0, 3.0)):
        cat = _cat(wave, _ratio(sim64, [[teff, logg, m] for m in mhs]))
        assert np.all(np.diff(cat) > 0.2), (teff, logg, cat)
    cat_mp, cat_sol = _cat(wave, _ratio(sim64, [[4500.0, 1.5, -2.5], [4500.0, 1.5, 0.0]]))
    assert 2.5 < cat_mp < 5.0
    assert cat_mp / cat_sol > 0.2


@pytest.mark.parametrize("teff", [4000.0, 4500.0])
def test_cat_strengthens_toward_low_gravity_in_cool_stars(sim64, wave, teff):
    """Cool giants have a stronger CaT than cool dwarfs (Cenarro et al. 2002): the majority ion's
    line-to-H- opacity ratio rises as P_e ~ g^(1/3) falls, and beats the narrower damping wings."""
    loggs = [1.0, 2.0, 3.0, 4.0, 5.0]
    for mh in (-1.0, 0.0):
        cat = _cat(wave, _ratio(sim64, [[teff, g, mh] for g in loggs]))
        assert np.all(np.diff(cat) < 0), (teff, mh, cat)
        assert cat[0] > 1.15 * cat[-1]


def test_wing_width_grows_with_logg(sim64, wave):
    """Pressure broadening: the width of Na I 8195 at 90% residual flux grows with log g (Na I is a
    minority species, so its line-to-continuum ratio does not depend on pressure: only the
    van der Waals width ~ P_g ~ g^(2/3) moves); and the Ca II 8542 damping parameter
    a = gamma / dlambda_D grows with log g at every Teff."""
    for teff in (4000.0, 4500.0, 5000.0):
        loggs = [2.0, 3.0, 4.0, 5.0]
        r = _ratio(sim64, [[teff, g, 0.0] for g in loggs])
        widths = np.array([_width_below(wave, x, 8194.82, 0.9) for x in r])
        assert np.all(np.diff(widths) > 0), (teff, widths)
        assert widths[-1] > 1.4 * widths[0]
    i = int(np.argmin(np.abs(sim64.line_wave.numpy() - 8542.09)))
    with torch.no_grad():
        _, dd, gam = sim64.line_params(_labels([[4500.0, g, 0.0] for g in (1.0, 2.0, 3.0, 4.0, 5.0)]))
    a = (gam[:, i] / dd[:, i]).numpy()
    assert np.all(np.diff(a) > 0) and a[-1] > 100 * a[0]


def test_na_doublet_separates_cool_dwarfs_from_giants(sim64, wave):
    """Na I 8183/8195 (Schiavon et al. 1997): at fixed [M/H], every cool dwarf (log g > 4.5,
    Teff < 4500 K) has a larger EW than every giant (log g < 2.5), by a clear margin."""
    teffs = [3500.0, 3800.0, 4100.0, 4400.0]
    for mh in (-0.5, 0.0, 0.3):
        d = _ew(wave, _ratio(sim64, [[t, g, mh] for t in teffs for g in (4.6, 5.0)]), *NA_BAND)
        g = _ew(wave, _ratio(sim64, [[t, g, mh] for t in teffs for g in (1.0, 1.7, 2.4)]), *NA_BAND)
        assert d.min() > 1.15 * g.max(), (mh, d.min(), g.max())


def test_paschen_lines_only_in_hot_stars(sim64, wave):
    """H I Pa12-Pa16 (their own opacity, line_mask): large above ~6500 K, negligible below 5000 K,
    rising steeply with Teff (Boltzmann factor of the n = 3 level, 12.09 eV)."""
    h = sim64.species_mask("H I")
    teffs = [4500.0, 5000.0, 5500.0, 6000.0, 6500.0, 7000.0]
    for logg, mh in ((2.0, -1.0), (4.0, 0.0), (4.5, 0.3)):
        r = _ratio(sim64, [[t, logg, mh] for t in teffs], line_mask=h)
        ew = sum(_ew(wave, r, c - 12.0, c + 12.0) for c in PASCHEN_12_16.values())
        assert np.all(np.diff(ew) > 0), ew
        assert ew[-2] > 0.5 and ew[-1] > 2.5, ew          # 6500 K, 7000 K
        assert ew[1] < 0.05 and ew[0] < 0.01, ew           # 5000 K, 4500 K
        assert ew[-2] > 100 * ew[1]
    # and in the full spectrum, the clean Pa12 and Pa14 windows dominate only in hot stars
    full = _ratio(sim64, [[7000.0, 4.0, 0.0], [4500.0, 4.0, 0.0]])
    clean = _ew(wave, full, 8744.0, 8757.0) + _ew(wave, full, 8592.0, 8605.0)
    assert clean[0] > 3.0 * clean[1]


# --------------------------------------------------------------------------- error model
def test_error_rises_at_oh_sky_lines(sim64, wave):
    """sigma at the brightest OH pixels exceeds sigma at nearby sky-free pixels (faint star)."""
    lab = _labels([[5000.0, 4.0, 0.0]])
    with torch.no_grad():
        flux = sim64(lab)
        sig = sim64.sigma(flux, torch.tensor([200.0], dtype=torch.float64))[0].numpy()
    oh = sim64.oh_relative.numpy()
    checked = 0
    for ohw, _ in sorted(line_lists.OH_BRIGHT, key=lambda x: -x[1])[:8]:
        p = int(np.argmin(np.abs(wave - ohw)))
        near = (np.abs(wave - ohw) < 40.0) & (oh < 0.01 * oh.max())
        if near.sum() < 5:
            continue
        assert sig[p] > 1.5 * np.median(sig[near]), ohw
        checked += 1
    assert checked >= 4


def test_error_scales_with_flux_in_photon_limited_regime(sim64, wave):
    """Bright star: sigma^2 ~ flux / counts (Poisson), so sigma tracks sqrt(flux) pixel by pixel
    and the core of Ca II 8542 has a smaller error (in counts-limited units) than its continuum."""
    lab = _labels([[4500.0, 2.0, 0.0]])
    counts = torch.tensor([1e6], dtype=torch.float64)
    with torch.no_grad():
        flux = sim64(lab)[0]
        sig = sim64.sigma(flux[None], counts)[0]
    thr = sim64.throughput
    pred = torch.sqrt(flux / (counts * thr))
    sky_free = sim64.oh_relative < 1e-3
    corr = np.corrcoef(sig[sky_free].numpy(), pred[sky_free].numpy())[0, 1]
    assert corr > 0.999
    core = int(np.argmin(np.abs(wave - 8542.09)))
    cont = (np.abs(wave - 8600.0) < 3.0).nonzero()[0]
    assert sig[core] < 0.8 * sig[cont].mean()
    # and it is the star's brightness that sets the overall level
    with torch.no_grad():
        faint = sim64.sigma(flux[None], torch.tensor([1e4], dtype=torch.float64))[0]
    assert torch.all(faint > 5 * sig)


# --------------------------------------------------------------------------- autograd
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_autograd_matches_finite_differences(sim64):
    """d flux / d label by autograd (forward mode) equals central finite differences to 1e-4
    (relative) on every pixel where the derivative is large: the model is smooth in the labels
    (no median-pixel normalisation, no label-dependent switches)."""
    lab = _labels([[4500.0, 2.5, -0.5], [6200.0, 4.2, 0.0], [3800.0, 4.8, -1.5]])
    jacs = {}
    for k, h in ((1, 1e-4), (0, 1e-2), (2, 1e-4)):
        tangent = torch.zeros_like(lab)
        tangent[:, k] = 1.0
        _, jac = torch.func.jvp(lambda x: sim64(x), (lab,), (tangent,))
        jacs[k] = jac
        step = torch.zeros_like(lab)
        step[:, k] = h
        with torch.no_grad():
            fd = (sim64(lab + step) - sim64(lab - step)) / (2 * h)
        big = jac.abs() > 0.05 * jac.abs().amax(dim=1, keepdim=True)
        assert int(big.sum()) > 30
        rel = ((fd - jac).abs() / jac.abs())[big]
        assert float(rel.max()) < 1e-4, (k, float(rel.max()))
    # reverse mode agrees with forward mode
    x = lab.clone().requires_grad_(True)
    v = torch.randn(3, simulate.N_PIX, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (sim64(x) * v).sum().backward()
    assert torch.allclose(x.grad[:, 1], (jacs[1] * v).sum(1), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- determinism / batching
def test_same_labels_give_identical_output():
    sim = simulate.Simulator()
    lab = torch.tensor([[4800.0, 2.2, -0.7], [6100.0, 4.1, 0.2]])
    with torch.no_grad():
        a, b = sim(lab), sim(lab)
        c = simulate.Simulator()(lab)
    assert torch.equal(a, b) and torch.equal(a, c)
    f1, s1 = simulate.simulate(lab.numpy(), star_counts=[300.0, 900.0])
    f2, s2 = simulate.simulate(lab.numpy(), star_counts=[300.0, 900.0])
    assert np.array_equal(f1, f2) and np.array_equal(s1, s2)


def test_build_with_same_seed_has_identical_fingerprint(tmp_path, monkeypatch):
    from core import data
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "art"))
    p1 = data.build(name="fp-a", n=24, seed=7, device="cpu")
    p2 = data.build(name="fp-b", n=24, seed=7, device="cpu")
    p3 = data.build(name="fp-c", n=24, seed=8, device="cpu")
    fa, fb, fc = (data.Dataset(p).fingerprint for p in (p1, p2, p3))
    assert fa == fb and fa != fc and len(fa) == 16


def test_batch_independence(sim64):
    """A star's spectrum does not depend on which other stars share its batch."""
    rng = np.random.default_rng(3)
    others = np.c_[rng.uniform(3500, 7000, 9), rng.uniform(1, 5, 9), rng.uniform(-2.5, 0.5, 9)]
    star = np.array([[4700.0, 2.7, -0.3]])
    with torch.no_grad():
        alone = sim64(_labels(star))[0]
        mixed = sim64(_labels(np.vstack([others[:4], star, others[4:]])))[4]
        first = sim64(_labels(np.vstack([star, others])))[0]
    assert torch.allclose(alone, mixed, rtol=0, atol=1e-12)
    assert torch.allclose(alone, first, rtol=0, atol=1e-12)
    sim32 = simulate.default_simulator()
    with torch.no_grad():
        a32 = sim32(torch.tensor(star, dtype=torch.float32))[0]
        m32 = sim32(torch.tensor(np.vstack([others, star]), dtype=torch.float32))[-1]
    assert torch.allclose(a32, m32, rtol=0, atol=1e-5)
