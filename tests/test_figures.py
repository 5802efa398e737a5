import math

import pytest

from figures import PDPoint, perception_distortion_figure

FIDELITY = "LR-consistency (dB)"


def draw(points, **kw):
    fig = perception_distortion_figure(points, fidelity_label=FIDELITY, title="levels", **kw)
    (ax,) = fig.axes
    fig.canvas.draw()  # layout and rendering must not fail either
    return ax


def texts(ax):
    return [t.get_text() for t in ax.texts]


def legend_labels(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def nine_points():
    return [
        PDPoint(str(n), fidelity=25.0 + n, naturalness=8.0 - 0.5 * n, generative=n <= 6, highlight=n == 7)
        for n in range(1, 10)
    ]


def test_one_labelled_point_per_input_and_y_inverted():
    ax = draw(nine_points())
    assert sorted(texts(ax), key=int) == [str(n) for n in range(1, 10)]
    assert ax.yaxis_inverted()
    assert not ax.xaxis_inverted()
    assert "more faithful" in ax.get_xlabel() and FIDELITY in ax.get_xlabel()
    assert "more natural" in ax.get_ylabel()


def test_labels_sit_on_their_points():
    points = nine_points()
    ax = draw(points)
    at = {t.get_text(): t.xy for t in ax.texts}
    for p in points:
        assert at[p.label] == pytest.approx((p.fidelity, p.naturalness))


def test_legend_names_kinds_and_the_recommended_level():
    labels = legend_labels(draw(nine_points()))
    assert "generative (LoRA > 0)" in labels
    assert "non-generative" in labels
    assert "recommended: 7" in labels


def test_generative_and_non_generative_markers_differ():
    ax = draw(nine_points())
    style = {c.get_label(): (c.lines[0].get_marker(), c.lines[0].get_color()) for c in ax.containers}
    assert style["generative (LoRA > 0)"] != style["non-generative"]
    by_kind = {c.get_label(): list(c.lines[0].get_xdata()) for c in ax.containers}
    assert by_kind["generative (LoRA > 0)"] == [25.0 + n for n in range(1, 7)]


def test_floor_line_when_given():
    ax = draw(nine_points(), floor=30.0)
    (line,) = [ln for ln in ax.lines if ln.get_label() == "fidelity floor"]
    assert line.get_linestyle() == "--"
    assert list(line.get_xdata()) == [30.0, 30.0]
    assert "fidelity floor" in legend_labels(ax)
    assert not [ln for ln in draw(nine_points()).lines if ln.get_label() == "fidelity floor"]


def test_error_bars_when_spreads_are_given():
    points = [
        PDPoint("7", 35.0, 5.0, fidelity_spread=1.5, naturalness_spread=0.4),
        PDPoint("8", 36.0, 6.0, fidelity_spread=None, naturalness_spread=math.nan),
    ]
    ax = draw(points)
    (bars,) = ax.containers
    _, _, barcols = bars.lines
    assert len(barcols) == 2  # x and y bars
    assert not draw([PDPoint("7", 35.0, 5.0)]).containers[0].lines[2]  # no spreads → no bars


def test_empty_input_says_so():
    ax = draw([])
    assert texts(ax) == ["no scores yet"]


def test_nan_and_non_finite_naturalness_are_left_out():
    points = [
        PDPoint("1", 25.0, math.nan),
        PDPoint("2", 26.0, math.inf),
        PDPoint("3", math.nan, 5.0),
        PDPoint("7", 35.0, 5.0),
    ]
    assert texts(draw(points)) == ["7"]
    assert texts(draw(points[:3])) == ["no finite scores to plot"]


def test_infinite_fidelity_at_the_right_edge():
    points = [PDPoint("7", 35.0, 5.0), PDPoint("8", math.inf, 6.0, highlight=True), PDPoint("9", 38.0, 5.5)]
    ax = draw(points, floor=40.0)
    at = {t.get_text(): t.xy for t in ax.texts}
    assert set(at) == {"7", "8 (∞)", "9"}
    x_inf = at["8 (∞)"][0]
    assert math.isfinite(x_inf) and x_inf > 40.0  # beyond every finite value and the floor
    assert ax.get_xlim()[1] > x_inf
    assert "recommended: 8" in legend_labels(ax)


def test_only_infinite_fidelity_does_not_crash():
    ax = draw([PDPoint("8", math.inf, 6.0, fidelity_spread=2.0)])
    assert texts(ax) == ["8 (∞)"]
    assert all(math.isfinite(v) for v in ax.get_xlim())


def level_summary(levels):
    """A per-level summary as ``evaluation.aggregate.aggregate`` gives it, with made-up means;
    the baseline is identical to itself (PSNR vs bicubic inf)."""
    import presets

    def stats(mean):
        return {"mean": mean, "std": 0.1, "inf": 0}

    return {
        str(n): {
            "level": n,
            "images": 2,
            "psnr_y": stats(20.0 + n),
            "ssim_y": stats(0.5 + 0.01 * n),
            "niqe": stats(8.0 - 0.5 * n),
            "psnr_vs_bicubic": stats(math.inf if n == presets.BASELINE_LEVEL else 30.0 + n),
        }
        for n in levels
    }


def test_the_evaluation_figures_are_captioned_and_draw_inf_where_the_lab_does():
    """Every evaluation figure has its report caption; an infinite PSNR vs bicubic (the
    baseline) sits at the same stand-in value in the evaluation's figure and the lab's."""
    from types import SimpleNamespace

    import presets
    from figures import (
        EVALUATION_CAPTIONS,
        PSNR_INF_NOTE,
        PSNR_INF_SHOWN_AS,
        evaluation_figures,
        fidelity_vs_change_figure,
        scores_figure,
    )

    levels = [presets.BASELINE_LEVEL - 1, presets.BASELINE_LEVEL]
    figs = evaluation_figures(level_summary(levels), None)
    assert set(figs) == set(EVALUATION_CAPTIONS)
    (ax,) = fidelity_vs_change_figure(level_summary(levels)).axes
    xs = [x for collection in ax.collections for x, _ in collection.get_offsets()]
    assert PSNR_INF_SHOWN_AS in xs and PSNR_INF_NOTE in ax.get_xlabel()
    result = SimpleNamespace(
        table=presets.TABLE,
        levels=[
            SimpleNamespace(
                level=n,
                status="ok",
                metrics={"psnr_vs_bicubic": math.inf, "ssim_vs_bicubic": 1.0, "lr_consistency": 40.0},
            )
            for n in levels
        ],
    )
    lab_ax = scores_figure(result).axes[0]
    assert list(lab_ax.lines[0].get_ydata()) == [PSNR_INF_SHOWN_AS] * 2
    assert PSNR_INF_NOTE in lab_ax.get_legend().get_texts()[0].get_text()


def inside(box, frame):
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


@pytest.mark.parametrize(
    "points",
    [
        nine_points(),  # the top point (9, least NIQE) is also the rightmost
        [PDPoint("7", 35.0, 5.0), PDPoint("8", math.inf, 6.0, highlight=True), PDPoint("9", 38.0, 3.5)],
        [PDPoint("8", 30.0, 6.0)],
    ],
    ids=["nine", "infinite-fidelity", "one-point"],
)
def test_the_top_points_label_stays_inside_the_axes(points):
    """Issue "What a newcomer sees" 5: the label of the most natural point (drawn at the top,
    the y axis being inverted) ran over the axes' frame into the title."""
    ax = draw(points, floor=32.0)
    fig = ax.figure
    top = min((p for p in points if math.isfinite(p.naturalness)), key=lambda p: p.naturalness)
    (label,) = [t for t in ax.texts if t.get_text().split(" ")[0] == top.label]
    box = label.get_window_extent()
    assert inside(box, ax.get_window_extent()), (box, ax.get_window_extent())
    assert inside(box, fig.bbox)
    assert all(inside(t.get_window_extent(), ax.get_window_extent()) for t in ax.texts)
