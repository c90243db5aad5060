"""The pruning study's accuracy-against-removed figure (benchmarks/pruning/report.py) on
synthetic per-seed results: mean line, ± sd band, seeds in the legend, never one seed's
runs joined."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("torch")  # the study's modules import the pruning pipeline

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "pruning"))

import report as study_report  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

# top-1 per seed at each budget (kept fraction); seed 2 is missing at keep 0.3
TOP1 = {
    "method-a": {0.5: [80.0, 82.0, 84.0], 0.3: [70.0, 74.0]},
    "method-b": {0.5: [81.0, 81.0, 84.0], 0.3: [60.0, 66.0, 69.0]},
}


def synthetic_rows() -> list[dict]:
    rows = [
        {"dataset": "d", "method": "dense", "keep": 1.0, "seed": s, "top1": 90.0 + s}
        for s in range(3)
    ]
    for method, by_keep in TOP1.items():
        for keep, values in by_keep.items():
            for seed, top1 in enumerate(values):
                rows.append(
                    {
                        "dataset": "d",
                        "method": method,
                        "keep": keep,
                        "seed": seed,
                        "top1": top1,
                        "params": int(1000 * keep),
                        "params_dense": 1000,
                    }
                )
    return rows


def test_curve_figure_draws_means_with_an_sd_band_and_the_seed_counts(tmp_path):
    protocol = {
        "keep": 0.5,
        "curve": {"methods": list(TOP1), "keeps": [0.3], "seeds": [0, 1, 2]},
    }
    data = study_report.DatasetResults("d", synthetic_rows())
    _, points = study_report.curve(data, protocol)
    fig = study_report.build_curve_figure({"d": (points, 91.0)})
    assert fig is not None
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"method-a (n=2-3 seeds)", "method-b (n=3 seeds)", "dense (mean)"}
    bands = ax.collections
    assert len(bands) == len(TOP1)
    for (method, by_keep), band in zip(TOP1.items(), bands, strict=True):
        label = next(name for name in lines if name.startswith(method))
        x, y = lines[label].get_data()
        removed = [100 * (1 - keep) for keep in sorted(by_keep, reverse=True)]
        means = [statistics.fmean(by_keep[keep]) for keep in sorted(by_keep, reverse=True)]
        sds = [statistics.stdev(by_keep[keep]) for keep in sorted(by_keep, reverse=True)]
        # one point per budget (the mean), never a line through one seed's values
        assert list(x) == pytest.approx(removed) and list(y) == pytest.approx(means)
        vertices = band.get_paths()[0].vertices
        for r, m, s in zip(removed, means, sds, strict=True):
            at = vertices[np.isclose(vertices[:, 0], r)][:, 1]
            assert at.min() == pytest.approx(m - s) and at.max() == pytest.approx(m + s)
        assert band.get_facecolor()[0][:3] == pytest.approx(to_rgb(lines[label].get_color()))
    assert study_report.curve_figure({"d": (points, 91.0)}, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert not study_report.curve_figure({"d": ({}, 91.0)}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
