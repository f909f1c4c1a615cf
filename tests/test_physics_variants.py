"""Physics variants of the simulator (issue #18, part 2): the literature trends each variant adds
(Fe I/Fe II ionisation balance, CN stronger in giants, CaT saturating above [M/H] -0.5, CaT weaker in warm
dwarfs), the recipe stored in and read back from the data set file, and a build without a recipe unchanged
byte for byte."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import cli, config, data
from core.physics import simulate

# `python -m core data build` fingerprints (profile quick) computed with the code BEFORE physics
# variants existed: a build without a recipe must still give them
BEFORE_FP = {(40, 42): "da332233fdf343ca"}      # and (64, 7): "46629a6c48c5ccf4"
CAT_BANDS = ((8484.0, 8513.0), (8522.0, 8562.0), (8642.0, 8682.0))   # Cenarro et al. (2001)
LOGG = [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.fixture(scope="module")
def sims():
    return {k: simulate.Simulator(torch.float64, physics=p) for k, p in
            (("plain", None), ("fe2", {"fe_ii": True}), ("cn", {"cn": True}), ("catsat", {"cat_saturation": True}))}


def _ratio(sim, rows, **kw):
    with torch.no_grad():
        return sim.line_ratio(torch.tensor(rows, dtype=torch.float64), **kw).numpy()


def _ew(sim, r, lo, hi):
    w = sim.wave.numpy()
    m = (w >= lo) & (w <= hi)
    return np.trapezoid(1.0 - r[..., m], w[m], axis=-1)


FE_II, FE_I = (7224.49, 7711.72), (7411.15, 7748.27)    # isolated from each other by > 8 A


def test_fe_ii_rises_at_low_gravity_while_fe_i_stays(sims):
    sim = sims["fe2"]
    assert "Fe II" not in set(sims["plain"].species) and list(sim.species).count("Fe II") == 4
    mask = torch.tensor([(s == "Fe II" and any(abs(w - x) < 0.01 for x in FE_II)) or
                         (s == "Fe I" and any(abs(w - x) < 0.01 for x in FE_I))
                         for s, w in zip(sim.species, sim.line_wave.numpy())])
    teffs = (4500.0, 5000.0, 5772.0)
    r = _ratio(sim, [[t, g, 0.0] for t in teffs for g in LOGG], line_mask=mask).reshape(len(teffs), len(LOGG), -1)
    for teff, rt in zip(teffs, r):
        fe2 = {w: _ew(sim, rt, w - 4, w + 4) for w in FE_II}
        fe1 = {w: _ew(sim, rt, w - 4, w + 4) for w in FE_I}
        for w, e in fe2.items():      # Fe II (the dominant ion, ~1/P_e): stronger at every step down in log g
            assert np.all(np.diff(e) < 0), (teff, w, e)
            assert e[0] / e[-1] > 4.0, (teff, w, e)
        for w, e in fe1.items():      # Fe I (minority): no pressure dependence of its strength, only damping
            assert e.max() / e.min() < 1.5, (teff, w, e)
        balance = fe2[7711.72] / fe1[7748.27]    # the ionisation balance: Fe II / Fe I rises as log g falls
        assert np.all(np.diff(balance) < 0) and balance[0] / balance[-1] > 4.0, (teff, balance)


def _cn_depth(sims, rows):
    """Mean depth the CN bands add over the (2,0) band, 7876-7950 A."""
    w = sims["plain"].wave.numpy()
    m = (w > 7876.0) & (w < 7950.0)
    with torch.no_grad():
        lab = torch.tensor(rows, dtype=torch.float64)
        on, off = sims["cn"](lab).numpy(), sims["plain"](lab).numpy()
    return 1.0 - (on[:, m] / off[:, m]).mean(axis=1)


def test_cn_is_stronger_in_a_giant_than_a_dwarf(sims):
    for teff in (4000.0, 4500.0, 5000.0):
        giant, dwarf = _cn_depth(sims, [[teff, 1.5, 0.0], [teff, 4.7, 0.0]])
        assert giant > 3.0 * dwarf and giant > 0.03, (teff, giant, dwarf)
    sun, hot, poor, rich = _cn_depth(sims, [[5772, 4.438, 0.0], [6800, 2.0, 0.0], [4500, 1.5, -1.5], [4500, 1.5, 0.0]])
    assert sun < 0.005 and hot < 0.005 and poor < 0.1 * rich
    # a CN index read off the spectra alone (band over its blue side): the giant-dwarf gap grows with CN on
    w = sims["plain"].wave.numpy()
    band, side = (w > 7876) & (w < 7950), (w > 7800) & (w < 7870)

    def index(sim):
        with torch.no_grad():
            f = sim(torch.tensor([[4500, 1.5, 0.0], [4500, 4.7, 0.0]], dtype=torch.float64)).numpy()
        i = 1.0 - f[:, band].mean(1) / f[:, side].mean(1)
        return i[0] - i[1]
    assert index(sims["cn"]) > index(sims["plain"]) + 0.03


def _cat(sim, rows):
    """CaT index of the Ca II lines alone (Cenarro bandpasses): the lines whose strength saturates."""
    r = _ratio(sim, rows, line_mask=sim.species_mask("Ca II"))
    return sum(_ew(sim, r, lo, hi) for lo, hi in CAT_BANDS)


def test_cat_flattens_above_minus_half_with_saturation_only(sims):
    mh = np.array([-2.5, -1.5, -0.5, 0.0, 0.5])
    stars = ((4500.0, 1.5), (4000.0, 2.5), (5000.0, 4.5))
    anchors = [[5772.0, 4.438, 0.0], [4500.0, 1.5, -2.5]]   # the Sun (solar atlas), a metal-poor giant (a few A)
    rows = [[t, g, m] for t, g in stars for m in mh] + anchors
    cat = {name: _cat(sims[name], rows) for name in ("plain", "catsat")}
    for k, (teff, logg) in enumerate(stars):
        for name, flat in (("plain", False), ("catsat", True)):
            c = cat[name][k * mh.size:(k + 1) * mh.size]
            below = (c[2] - c[0]) / 2.0                 # A per dex from -2.5 to -0.5
            above = (c[4] - c[2]) / 1.0                 # from -0.5 to +0.5
            assert below > 0.5, (name, teff, c)
            if flat:
                assert abs(above) < 0.25 * below, (teff, logg, c)
            else:
                assert above > 0.8 * below, (teff, logg, c)
    # the anchors keep their strengths
    for a, b, row in zip(cat["plain"][-2:], cat["catsat"][-2:], anchors):
        assert abs(b / a - 1.0) < 0.05, (row, a, b)


def test_cat_weakens_in_warm_dwarfs_with_the_decline_only():
    """Plain physics: a dwarf's Ca II triplet grows with Teff up to 7000 K (6.9 -> 8.2 A from 4000 K), so an
    F dwarf's CaT is stronger than a K dwarf's, against observation (it weakens from K to F types). The
    `catwarm` variant: the same at and below the Sun's Teff, weaker above it, at every gravity."""
    plain, warm = simulate.Simulator(torch.float64), simulate.Simulator(torch.float64, physics={"cat_warm_decline": True})
    teffs = [4000.0, 4500.0, 5000.0, 5772.0, 6000.0, 6500.0, 7000.0]
    for logg in (4.5, 2.0):
        rows = [[t, logg, 0.0] for t in teffs]
        p, w = _cat(plain, rows), _cat(warm, rows)
        assert np.all(np.diff(p[3:]) > 0), (logg, p)                        # the shortcoming the variant addresses
        np.testing.assert_allclose(w[:4], p[:4], rtol=1e-9)                 # K dwarfs and the Sun unchanged
        assert np.all(np.diff(w[3:]) < 0) and w[5] < w[1] and w[6] < 0.85 * w[3], (logg, w)
    # differentiable through the onset (the Fisher information and the ceiling take d flux / d Teff)
    lab = torch.tensor([[5772.0, 4.5, 0.0], [5900.0, 4.5, 0.0], [6800.0, 4.5, 0.0]], dtype=torch.float64,
                       requires_grad=True)
    warm(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()


def test_default_physics_is_unchanged(sims):
    for (n, seed), fp in BEFORE_FP.items():
        assert data.Dataset(data.build(name=f"pv-plain-{n}", n=n, seed=seed, device="cpu")).fingerprint == fp
    lab = torch.tensor([[4500.0, 1.5, 0.0], [6500.0, 4.0, -1.0]], dtype=torch.float64)
    explicit = simulate.Simulator(torch.float64, physics=dict(simulate.PHYSICS_DEFAULTS))
    with torch.no_grad():
        assert torch.equal(explicit(lab), sims["plain"](lab))
    assert simulate.physics_key(None) == "" and simulate.variant_simulator(None) is simulate.default_simulator()


@pytest.fixture(scope="module")
def variant_sets():
    plain = data.Dataset(data.build(name="pv-plain", n=40, device="cpu"))
    maj = data.Dataset(data.build(n=40, device="cpu", physics="maj0.3"))
    both = data.Dataset(data.build(n=40, device="cpu", physics="fe2,cn", nuisance="survey"))
    return plain, maj, both


def test_the_recipe_round_trips_through_the_data_set_file(variant_sets):
    plain, maj, both = variant_sets
    assert plain.physics_recipe is None and "physics" not in plain.info()
    assert maj.name == "sim-quick+maj0.3" and maj.physics_recipe == config.physics_recipe("maj0.3")
    assert maj.physics_recipe["majority_g_extra"] == 0.3 and maj.info()["physics"] == "maj0.3"
    assert both.name == "sim-quick+fe2+cn-survey" and both.physics_recipe["name"] == "fe2+cn"
    assert both.physics_recipe["fe_ii"] is True and both.physics_recipe["cn"] is True
    assert both.nuisance_recipe["name"] == "survey"
    # the same seed: the same stars, counts and splits; other spectra
    for ds in (maj, both):
        np.testing.assert_array_equal(ds.labels, plain.labels)
        np.testing.assert_array_equal(ds.star_counts, plain.star_counts)
        for s in data.SPLITS:
            np.testing.assert_array_equal(ds.splits[s], plain.splits[s])
        assert ds.fingerprint != plain.fingerprint
    # the stored flux is the variant simulator's, for the recipe read back from the file
    sim = simulate.variant_simulator(maj.physics_recipe)
    assert sim.majority_g_extra == 0.3
    with torch.no_grad():
        want = sim(torch.as_tensor(maj.labels, dtype=torch.float32)).numpy()
    got, _ = maj.read(np.arange(maj.n))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - plain.read(np.arange(plain.n))[0]).max() > 1e-3


@pytest.mark.parametrize("argv, words", [
    (["data", "build", "--n", "30", "--physics", "nosuch"], "unknown physics recipe 'nosuch'"),
    (["data", "build", "--n", "30", "--physics", "maj0.3,maj0.5"], "set majority_g_extra twice"),
])
def test_unknown_recipe_is_one_line_and_exit_2(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and words in err


def test_bad_custom_physics_is_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown physics setting"):
        data.build(name="pv-bad", n=30, physics={"majority_g_extra": 0.3, "tio": True})
    with pytest.raises(ValueError, match="majority_g_extra must be"):
        simulate.Simulator(physics={"majority_g_extra": "big"})
    assert "pv-bad" not in data.list_datasets()
