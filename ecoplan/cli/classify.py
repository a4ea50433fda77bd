"""``ecoplan classify ml``: supervised classification of imagery into zones."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecoplan.errors import InputError


def _params(values: tuple[str, ...]) -> dict:
    out = {}
    for item in values:
        if "=" not in item:
            raise InputError(f"--param {item!r}: write KEY=VALUE, e.g. --param n_estimators=300")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@click.group()
def classify():
    """Classify land into zones (crosswalks run inside `ecoplan run`; ML here)."""


@classify.command("ml")
@click.option(
    "--imagery",
    "imagery",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image file (repeat for more; bands are stacked, later images resampled to the first).",
)
@click.option(
    "--training",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Training points or polygons (any OGR vector, any CRS).",
)
@click.option("--training-layer", help="Layer of the training file (default: the first).")
@click.option("--label-field", help="Field of the training file holding the class label.")
@click.option(
    "--crosswalk",
    help="Labels -> zones: a crosswalk YAML with text codes (not needed if labels are zone names).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Zone raster to write (GeoTIFF, uint8, nodata 0).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Accuracy report (JSON); a .txt version is written beside it.",
)
@click.option(
    "--model",
    default="random_forest",
    show_default=True,
    help="random_forest, hist_gradient_boosting, extra_trees, svm, knn, … or a scikit-learn "
    "classifier class name.",
)
@click.option("--param", "params", multiple=True, help="Model parameter KEY=VALUE (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--cv-folds", default=5, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--block-size-m",
    default=1000.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Side of the spatial CV blocks in metres.",
)
@click.option(
    "--max-pixels-per-feature",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Pixels drawn at most from one training polygon.",
)
@click.option(
    "--balance/--no-balance",
    default=True,
    show_default=True,
    help="Weight classes equally when fitting (if the model takes sample weights).",
)
@click.option(
    "--texture-px",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Add each band's mean and std over a (2r+1)² window as features (0 = bands only).",
)
@click.option("--chunk-size", default=512, show_default=True, type=click.IntRange(min=16))
@click.option(
    "--save-model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the fitted model (joblib) to reuse on another image.",
)
@click.option(
    "--load-model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use a saved model instead of training; --training then validates it.",
)
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def ml(
    imagery,
    training,
    training_layer,
    label_field,
    crosswalk,
    out,
    report,
    model,
    params,
    seed,
    cv_folds,
    block_size_m,
    max_pixels_per_feature,
    balance,
    texture_px,
    chunk_size,
    save_model,
    load_model,
    overwrite,
    quiet,
):
    """Map imagery to zones with a scikit-learn classifier trained on labelled samples."""
    from ecoplan.ml import format_report, run_ml

    result = run_ml(
        imagery,
        out=out,
        training=training,
        training_layer=training_layer,
        label_field=label_field,
        crosswalk=crosswalk,
        report_path=report,
        model=model,
        seed=seed,
        params=_params(params),
        folds=cv_folds,
        block_m=block_size_m,
        max_pixels_per_feature=max_pixels_per_feature,
        balance=balance,
        texture_px=texture_px,
        chunk_size=chunk_size,
        save_model_path=save_model,
        load_model_path=load_model,
        overwrite=overwrite,
    )
    if quiet:
        return
    click.echo(f"wrote {result.zone_raster}")
    if result.report_path:
        click.echo(f"wrote {result.report_path} and {result.report_path.with_suffix('.txt')}")
    if save_model:
        click.echo(f"wrote {save_model}")
    if result.report:
        click.echo(format_report(result.report), nl=False)
    for note in result.notes:
        click.echo(f"warning: {note}", err=True)


COMMANDS = [classify]
