"""Training replicates (#16, part 1): `train --seeds N` fits N replicates of each spec with another
training seed and the same data and test noise; each is an ordinary cached run; the report shows the
mean, the sd over seeds and N. Replicate 0 is the run a single seed always gave (same run id)."""
from __future__ import annotations

import numpy as np

from core import cli, data
from core.analysis import report
from core.engine import registry, spec, suites, train


def test_seeds_fit_replicates_on_the_same_test_set_and_are_cached(tiny_dataset, capsys):
    args = ["train", "--suite", "report", "--only", "mlp", "--noise", "0.1", "--dataset", tiny_dataset,
            "--seeds", "2", "--workers", "1"]
    assert cli.main(args) == 0
    base = next(s for s in suites.suite("report", "quick", tiny_dataset) if s["model"] == "mlp"
                and s["noise_level"] == 0.1)
    r0, r1 = train.cached_result(base), train.cached_result(dict(base, replicate=1))
    assert r0 is not None and r1 is not None and r0.run_id != r1.run_id
    fp = data.Dataset(tiny_dataset).fingerprint
    assert r0.run_id == train.spec_hash(base, fp)                    # replicate 0 = the single-seed run
    p0, p1 = r0.predictions(), r1.predictions()
    assert np.array_equal(p0["index"], p1["index"]) and np.array_equal(p0["y_true"], p1["y_true"])
    assert not np.allclose(p0["y_pred"], p1["y_pred"])              # another training seed
    con = registry.connect()
    n_done = len(registry.runs(con, status="done"))
    capsys.readouterr()
    assert cli.main(args) == 0                                        # a re-run is served from the cache
    assert "cached" in capsys.readouterr().out and len(registry.runs(con, status="done")) == n_done
    m = report.matrix("report", "quick", tiny_dataset)
    row = m[m["method"] == "MLP"].iloc[0]
    assert row["seeds @0.1"] == 2 and row["R2 sd @0.1"] > 0
    assert row["R2 @0.1"] == np.mean([r0.metrics["r2"], r1.metrics["r2"]])
    assert "(2)" in report.markdown("report", "quick", tiny_dataset)


def test_replicates_keep_run_ids_and_carry_to_dependencies():
    s = spec.make_spec("latent_probe", {"encoder": "flux", "encoder_noise": 1.0}, 1.0, "quick", "d", inputs="flux")
    reps = spec.replicates([s], 3)
    assert [r.get("replicate", 0) for r in reps] == [0, 1, 2] and "replicate" not in reps[0]
    ids = {spec.spec_hash(r, "fp") for r in reps}
    assert len(ids) == 3 and spec.spec_hash(s, "fp") in ids
    assert spec.dependency_specs(reps[2])["encoder"]["replicate"] == 2       # its own encoder replicate
    assert "replicate" not in spec.dependency_specs(reps[0])["encoder"]
    assert spec.training_seed(reps[2]) == 2 * spec.REPLICATE_SEED_STEP


def test_a_fit_without_a_seed_gets_no_replicates():
    """Ridge, the Cannon and the ceiling fit without randomness: N replicates of them would be N copies of
    one run (measured before: Ridge 0.793 +- 0.000 over 2 seeds). They get one, the others N."""
    specs = suites.suite("report", "quick", "d") + suites.suite("ceiling", "quick", "d")
    reps = spec.replicates(specs, 3)
    per = {}
    for r in reps:
        per.setdefault((r["model"], r["noise_level"]), []).append(r.get("replicate", 0))
    assert per[("ridge", 0.1)] == [0] and per[("cannon", 1.0)] == [0] and per[("likelihood_ceiling", 1.0)] == [0]
    assert per[("mlp", 0.1)] == [0, 1, 2] and per[("lightgbm", 1.0)] == [0, 1, 2]
