"""components/charts.py: phase marks on the curves, the clickable confusion matrix, metric rows."""

from components import charts
from core.training.evaluation import class_metrics

ROWS = [
    {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "phase": "head"},
    {"epoch": 2, "loss": 0.8, "accuracy": 0.6, "phase": "head"},
    {"epoch": 3, "loss": 0.5, "accuracy": 0.8, "phase": "finetune"},
]


def test_phase_boundary_is_marked_and_drawn_on_both_panels():
    marks = charts.phase_marks(ROWS)
    assert marks == [{"epoch": 2, "label": "fine-tuning starts"}]
    assert charts.phase_marks([{k: v for k, v in r.items() if k != "phase"} for r in ROWS]) == []
    fig = charts.curves_figure(ROWS, marks=marks)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 2 and {s.x0 for s in lines} == {2}
    assert [a.text for a in fig.layout.annotations if a.text == "fine-tuning starts"] == [
        "fine-tuning starts"
    ] * 2


def test_confusion_cells_carry_their_true_and_predicted_class():
    fig = charts.confusion_figure([[3, 1], [0, 4]], ["<b>cat</b>", "dog"])
    markers = fig.data[1]
    assert [list(c) for c in markers.customdata] == [[0, 0, 3], [0, 1, 1], [1, 0, 0], [1, 1, 4]]
    assert "&lt;b&gt;cat" in markers.y[0]  # class names shown literally
    assert charts.selected_cell({"selection": {"points": [{"customdata": [1, 0, 0]}]}}) == (1, 0)
    assert charts.selected_cell({"selection": {"points": []}}) is None
    assert charts.selected_cell(None) is None


def test_metric_rows_end_with_the_macro_average():
    rows = charts.class_metrics_rows(class_metrics([[3, 1], [0, 4]], ["cat", "dog"]))
    assert [r["class"] for r in rows] == ["cat", "dog", "macro average"]
    assert rows[-1]["support"] == 8 and rows[-1]["recall"] == (0.75 + 1.0) / 2


def test_the_runs_table_says_where_each_run_ran_without_a_host_name(tmp_path):
    from core.training.runs import RunInfo

    def run(name, executor, node):
        return RunInfo(tmp_path / name, name, "done", {}, 0.5, 1.0, [], [], None,
                       executor=executor, node=node)  # fmt: skip

    rows = charts.runs_rows([run("a", "ray", "10.0.0.7"), run("b", "local", "lab-server"),
                             run("c", None, None)])  # fmt: skip
    assert [r["ran on"] for r in rows] == ["ray (10.0.0.7)", "local", "local"]
