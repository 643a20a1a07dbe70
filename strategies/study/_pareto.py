"""Pareto results of a study: compute the plot data (NamedTuples, no plotting library), then draw.

Optuna's compute-then-draw split (``_get_pareto_front_info`` + renderer): tests assert on the info
tuples, never on pixels. plotly is imported only inside the ``draw_*`` functions; PNG needs kaleido and a
Chromium and is skipped (with the reason returned) when either is missing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["ParetoFrontInfo", "HypervolumeInfo", "ImportanceInfo", "pareto_front_info", "hypervolume_info",
           "importance_info", "non_dominated", "export_pareto", "trial_spec_json"]


class ParetoFrontInfo(NamedTuple):
    objectives: list[str]
    directions: list[str]
    numbers: list[int]              # completed, feasible trials
    values: list[list[float]]       # their objective values, in ``objectives`` order
    front: list[int]                # the non-dominated trial numbers (subset of ``numbers``)
    infeasible: list[int]           # completed trials that violate a constraint (never on the front)


class HypervolumeInfo(NamedTuple):
    numbers: list[int]              # completed trial numbers in order
    hypervolume: list[float]        # hypervolume of the front after each of them (minimisation form)
    reference_point: list[float]


class ImportanceInfo(NamedTuple):
    objectives: list[str]
    importances: dict[str, dict[str, float]]  # objective -> {label: importance}
    note: str                                 # why some are missing ("" when all computed)


def _signs(directions: list[str]) -> list[float]:
    return [-1.0 if d == "maximize" else 1.0 for d in directions]


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """``a`` dominates ``b``: no worse in every objective, better in one."""
    sa = [s * v for s, v in zip(_signs(directions), a)]
    sb = [s * v for s, v in zip(_signs(directions), b)]
    return all(x <= y for x, y in zip(sa, sb)) and any(x < y for x, y in zip(sa, sb))


def non_dominated(values: list[list[float]], directions: list[str]) -> list[int]:
    """Indices of the non-dominated points (brute force, O(n²); studies hold hundreds of trials)."""
    return [i for i, v in enumerate(values)
            if not any(dominates(w, v, directions) for j, w in enumerate(values) if j != i)]


def _feasible(trial: Any) -> bool:
    """Feasible: no violated constraint (``max_params``) and not pruned as infeasible (user attr ``infeasible``:
    the suggested combination cannot be built)."""
    if "infeasible" in trial.user_attrs:
        return False
    return all(v <= 0 for k, v in trial.system_attrs.items() if k.startswith("constraints:")) and all(
        v <= 0 for v in trial.system_attrs.get("constraints", []) or [])


def _complete(study: Any) -> list[Any]:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _objectives(study: Any) -> list[str]:
    objs = study.user_attrs.get("objectives")
    return list(objs) if objs else [f"objective{i}" for i in range(len(study.directions))]


def pareto_front_info(study: Any) -> ParetoFrontInfo:
    directions = [d.name.lower() for d in study.directions]
    trials = _complete(study)
    ok = [t for t in trials if _feasible(t)]
    values = [list(t.values) for t in ok]
    front = [ok[i].number for i in non_dominated(values, directions)]
    return ParetoFrontInfo(_objectives(study), directions, [t.number for t in ok], values, front,
                           [t.number for t in trials if not _feasible(t)])


def _hypervolume_2d(points: list[list[float]], ref: list[float]) -> float:
    pts = sorted((p for p in points if p[0] < ref[0] and p[1] < ref[1]), key=lambda p: (p[0], p[1]))
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv


def hypervolume_info(front: ParetoFrontInfo) -> HypervolumeInfo:
    """Hypervolume after each completed trial, objectives in minimisation form (accuracy negated).

    Reference point: accuracy 0, and 1.1 × the largest params/MACs seen, so every trial counts.
    """
    signs = _signs(front.directions)
    pts = [[s * v for s, v in zip(signs, vals)] for vals in front.values]
    if not pts:
        return HypervolumeInfo([], [], [])
    ref = [0.0 if d == "maximize" else 1.1 * max(p[i] for p in pts) + 1e-12
           for i, d in enumerate(front.directions)]
    order = sorted(range(len(pts)), key=lambda i: front.numbers[i])
    out = []
    for k in range(1, len(order) + 1):
        sub = [pts[i] for i in order[:k]]
        if len(ref) == 1:
            out.append(max(0.0, ref[0] - min(p[0] for p in sub)))
        elif len(ref) == 2:
            out.append(_hypervolume_2d(sub, ref))
        else:
            import numpy as np
            from optuna._hypervolume import compute_hypervolume  # private in Optuna 5: WFG for >= 3 objectives

            inside = np.array([p for p in sub if all(x < r for x, r in zip(p, ref))], dtype=float)
            out.append(float(compute_hypervolume(inside, np.array(ref))) if len(inside) else 0.0)
    return HypervolumeInfo([front.numbers[i] for i in order], out, ref)


def importance_info(study: Any) -> ImportanceInfo:
    import warnings

    import optuna

    objectives, result, notes = _objectives(study), {}, []
    signs = _signs([d.name.lower() for d in study.directions])
    for i, name in enumerate(objectives):
        try:
            with warnings.catch_warnings():  # the evaluator ranks params by how they achieve *low* targets
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study, target=lambda t, i=i: signs[i] * t.values[i])
            result[name] = {k: float(v) for k, v in imp.items()}
        except (RuntimeError, ValueError, ImportError) as err:
            notes.append(f"{name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    return ImportanceInfo(objectives, result, "; ".join(notes))


# --------------------------------------------------------------------------- drawing (plotly)
def draw_pareto_front(info: ParetoFrontInfo, x: str) -> Any:
    import plotly.graph_objects as go

    xi, yi = info.objectives.index(x), info.objectives.index("accuracy")
    on = set(info.front)
    fig = go.Figure()
    for label, keep in (("dominated", False), ("Pareto front", True)):
        idx = [k for k, n in enumerate(info.numbers) if (n in on) == keep]
        idx.sort(key=lambda k: info.values[k][xi])
        fig.add_trace(go.Scatter(
            x=[info.values[k][xi] for k in idx], y=[info.values[k][yi] for k in idx], name=label,
            mode="lines+markers" if keep else "markers", line_shape="hv",
            text=[f"trial {info.numbers[k]}" for k in idx]))
    fig.update_layout(title=f"Pareto front: accuracy vs {x}", xaxis_title=x, yaxis_title="val accuracy",
                      xaxis_type="log")
    return fig


def draw_hypervolume(info: HypervolumeInfo) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=info.numbers, y=info.hypervolume, mode="lines+markers", line_shape="hv"))
    ref = ", ".join(f"{v:,.4g}" for v in info.reference_point)
    fig.update_layout(title=f"hypervolume history (reference point {ref})",
                      xaxis_title="trial", yaxis_title="hypervolume")
    return fig


def draw_importances(info: ImportanceInfo) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, imp in info.importances.items():
        fig.add_trace(go.Bar(x=list(imp.values()), y=list(imp.keys()), orientation="h", name=name))
    fig.update_layout(title="parameter importances (fANOVA)" + (f" — {info.note}" if info.note else ""),
                      xaxis_title="importance")
    return fig


def page_data(study: Any, front: ParetoFrontInfo, hv: HypervolumeInfo, imp: ImportanceInfo,
              specs: list[Path], out: Path) -> Any:
    """The data of ``pareto.html`` (:class:`mgnas.viz.ParetoPageData`): every trial with its choices, params,
    MACs, accuracy, state and exported spec file, plus the study's header."""
    from mgnas.viz import pareto_page_data

    rows = [{"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
             "user_attrs": t.user_attrs, "feasible": _feasible(t)} for t in study.get_trials(deepcopy=False)]
    paths = {int(p.stem.rsplit("_", 1)[-1]): str(Path(p).relative_to(out)) for p in specs}
    return pareto_page_data(rows, study=study.study_name, objectives=front.objectives, directions=front.directions,
                            front=front.front, hv_numbers=hv.numbers, hypervolume=hv.hypervolume,
                            reference_point=hv.reference_point, importances=imp.importances,
                            importance_note=imp.note, study_attrs=study.user_attrs, spec_paths=paths)


# --------------------------------------------------------------------------- export
def _atomic_write(path: Path, text: str) -> None:
    from mgnas._atomic import write_text_atomic

    write_text_atomic(text, path)


def _trials_csv(study: Any, objectives: list[str]) -> str:
    import io

    trials = study.get_trials(deepcopy=False)
    labels = sorted({k for t in trials for k in t.params})
    buf = io.StringIO()
    w = csv.writer(buf)
    attrs = ["params", "macs", "val_accuracy", "test_accuracy", "seconds", "infeasible", "duplicate_of",
             "pruned_at_epoch", "pruned_reason", "surplus", "spec_hash", "worker", "device"]
    w.writerow(["number", "state", *[f"value_{o}" for o in objectives], *labels, *[f"attr_{a}" for a in attrs],
                "feasible"])
    for t in trials:
        vals = list(t.values) if t.values is not None else [""] * len(objectives)
        w.writerow([t.number, t.state.name, *vals, *[t.params.get(k, "") for k in labels],
                    *[t.user_attrs.get(a, "") for a in attrs], _feasible(t)])
    return buf.getvalue()


def trial_spec_json(trial: Any, artifacts: Any = None) -> str | None:
    """A trial's spec JSON: from its artifact (user attr ``spec_artifact``, read from ``artifacts``) or, for
    studies written before specs became artifacts (and NNI-imported trials), from user attr ``spec``."""
    if "spec" in trial.user_attrs:
        return trial.user_attrs["spec"]
    artifact_id = trial.user_attrs.get("spec_artifact")
    if artifact_id is None or artifacts is None:
        return None
    try:
        with artifacts.open_reader(artifact_id) as fh:
            return fh.read().decode("utf-8")
    except Exception:  # noqa: BLE001 - a missing artifact file: the spec is not exported, the rest is
        return None


def export_pareto(study: Any, out_dir: Path | str, *, png: bool = True, artifacts: Any = None) -> dict[str, Any]:
    """Write ``front/trial_NNNN.json`` (specs with metrics), ``trials.csv``, ``pareto.html`` (+ PNGs).

    The specs come from the trials' artifacts in ``artifacts`` (default: the study's store, see
    :func:`._storage.study_artifact_store`) or from the user attr ``spec`` of older studies."""
    from mgnas.spec import loads, save

    from ._storage import study_artifact_store

    if artifacts is None:
        artifacts = study_artifact_store(study)
    out = Path(out_dir)
    (out / "front").mkdir(parents=True, exist_ok=True)
    front = pareto_front_info(study)
    hv = hypervolume_info(front)
    imp = importance_info(study)
    by_number = {t.number: t for t in _complete(study)}
    written = []
    for n in front.front:
        t = by_number[n]
        text = trial_spec_json(t, artifacts)
        if text is None:
            continue
        spec = loads(text).with_metrics(
            params=t.user_attrs.get("params"), macs=t.user_attrs.get("macs"),
            val_accuracy=t.user_attrs.get("val_accuracy"), test_accuracy=t.user_attrs.get("test_accuracy"),
        ).with_provenance(study=study.study_name, trial=n, choices=dict(t.params))
        written.append(save(spec, out / "front" / f"trial_{n:04d}.json"))
    for old in (out / "front").glob("trial_*.json"):  # an earlier export's front: the folder must not contradict
        if old not in written:
            old.unlink()
    _atomic_write(out / "trials.csv", _trials_csv(study, front.objectives))
    page = page_data(study, front, hv, imp, written, out)  # header: space, data, epochs per trial, trial counts
    _atomic_write(out / "pareto.json", json.dumps({"front": front._asdict(), "hypervolume": hv._asdict(),
                                                   "importance": imp._asdict(), "header": page.header._asdict()},
                                                  indent=1) + "\n")
    result: dict[str, Any] = {"front": front, "hypervolume": hv, "importance": imp, "specs": written,
                              "html": None, "png": [], "png_note": ""}
    try:
        from mgnas.viz import pareto_figures

        figs = pareto_figures(page)  # the figures of pareto.html (PNG export below)
    except ImportError as err:
        result["png_note"] = f"plots skipped: {err}"
        return result
    from mgnas.viz import write_pareto_page

    write_pareto_page(out / "pareto.html", page)
    result["html"] = out / "pareto.html"
    if png:
        try:
            import kaleido  # noqa: F401

            from mgnas._atomic import atomic_path

            for i, f in enumerate(figs):
                with atomic_path(out / f"plot_{i}.png") as tmp:
                    f.write_image(str(tmp), format="png")
                result["png"].append(out / f"plot_{i}.png")
        except Exception as err:  # noqa: BLE001 - kaleido or its Chromium missing: PNG is optional
            result["png_note"] = f"PNG skipped ({_short(err)})"
    return result


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:120] if text else type(err).__name__
