"""Train an FP32 baseline.

Examples::

    python -m pipelines.train --model smallcnn --dataset digits
    python -m pipelines.train --model resnet18 --dataset cifar10 --epochs 30
    python -m pipelines.train --model resnet18 --dataset cifar10 --data-dir ~/tfds
    python -m pipelines.train --config configs/train/resnet18_cifar10.yaml --set optimizer.lr=0.05
    python -m pipelines.train --model my_model.keras --dataset npz:data.npz
    python -m pipelines.train --preset resnet20_cifar10 --dataset npz:cifar10.npz   # He et al.'s ResNet-20

Configuration is resolved in this order: the defaults for the model and
dataset (or ``--preset NAME``), then ``--config FILE``, then the flags given, then ``--set KEY=VALUE``.

Resume: an interrupted run is continued by running the same command again.
Without ``--out``, the newest unfinished run of the same model and dataset
whose configuration is identical is resumed (``--fresh`` starts a new one); with
``--out DIR``, an unfinished run there with the same configuration is resumed.
A finished run, or one with another configuration, is never overwritten unless
``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import logging
import sys

import tfq  # noqa: F401
from tfq.cli import EXIT_OK, EXIT_USAGE, add_common_args, guarded, setup_logging

log = logging.getLogger("pipelines.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("model and data")
    g.add_argument("--preset", help="a named recipe (resnet20_cifar10); the flags below apply on top of it")
    g.add_argument("--model", help="registered model name or path to a .keras file / SavedModel (default: smallcnn)")
    g.add_argument("--dataset", help="cifar10, cifar100, digits, imagefolder:PATH or npz:PATH (default: digits)")
    g.add_argument("--data-dir", help="TFDS data directory holding a prepared offline copy")
    g.add_argument("--image-size", type=int, help="resize images to this square size")
    g.add_argument("--width", type=float, dest="width_multiplier", help="width multiplier")
    g.add_argument("--stem", choices=["cifar", "imagenet"], help="stem: cifar (3x3) or imagenet (7x7 + pool)")
    g.add_argument("--limit", type=int, help="use at most N examples per source split (smoke tests)")
    t = p.add_argument_group("optimization")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--seed", type=int)
    add_common_args(p)
    p.add_argument("--fresh", action="store_true", help="start a new run instead of resuming an unfinished one")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    """Defaults -> --config file -> flags -> --set overrides."""
    from tfq.configs import deep_merge, load_mapping, parse_set_args
    from tfq.train import TrainConfig, default_train_config, get_preset

    if args.preset:
        cfg = get_preset(args.preset)
        if args.config:
            cfg = TrainConfig.from_dict(deep_merge(cfg.to_dict(), load_mapping(args.config)))
    elif args.config:
        cfg = TrainConfig.from_dict(load_mapping(args.config))
    else:
        cfg = default_train_config(args.model or "smallcnn", args.dataset or "digits")
    flags = {
        "model.name": args.model,
        "model.width_multiplier": args.width_multiplier,
        "model.stem": args.stem,
        "data.name": args.dataset,
        "data.data_dir": args.data_dir,
        "data.image_size": args.image_size,
        "data.limit": args.limit,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer.lr": args.lr,
        "optimizer.weight_decay": args.weight_decay,
        "optimizer.label_smoothing": args.label_smoothing,
        "seed": args.seed,
    }
    cfg = cfg.with_overrides({k: v for k, v in flags.items() if v is not None})
    return cfg.with_overrides(parse_set_args(args.set))


def validate_names(cfg) -> None:
    """Fails early, before any work, on an unknown model or dataset name."""
    import models
    from tfq.data import check_dataset_name

    if not models.is_model_path(cfg.model.name) and cfg.model.name not in models.available_models():
        raise ValueError(
            f"unknown model {cfg.model.name!r}; valid names: {', '.join(models.available_models())} "
            "(or a path to a .keras file or SavedModel directory)"
        )
    check_dataset_name(cfg.data.name)


def open_run_dir(args: argparse.Namespace, cfg):
    """Creates the run directory, or finds the unfinished one to resume."""
    from pathlib import Path

    from tfq.rundir import RunDir, RunDirError, find_runs
    from tfq.train import config_matches, run_name

    meta = {"model": cfg.model.name, "dataset": cfg.data.name}
    if args.out:
        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            try:
                existing = RunDir.open(out)
            except RunDirError:
                raise RunDirError(f"{out} exists and is not a tfq run directory; choose another --out") from None
            if existing.is_complete:
                raise RunDirError(f"{out} holds a finished run; pass --overwrite to train again there")
            if not config_matches(existing, cfg):
                raise RunDirError(
                    f"{out} holds an unfinished run with a different configuration; "
                    "pass --overwrite to replace it or choose another --out"
                )
            log.info("resuming the unfinished run in %s", out)
            return RunDir.create(kind="train", out=out, resume=True, meta=meta)
        return RunDir.create(kind="train", out=out, overwrite=args.overwrite, meta=meta)
    if not args.fresh:
        for run in find_runs(args.root, kind="train", complete_only=False, **meta):
            if not run.is_complete and config_matches(run, cfg):
                log.info("resuming the unfinished run %s (pass --fresh to start a new one)", run.path)
                return RunDir.create(kind="train", out=run.path, resume=True, meta=meta)
    return RunDir.create(kind="train", name=run_name(cfg.model.name, cfg.data.name), root=args.root, meta=meta)


@guarded
def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    cfg = resolve_config(args)
    validate_names(cfg)
    from tfq.train import train

    run = open_run_dir(args, cfg)
    print(f"run directory: {run.path}", flush=True)
    results = train(cfg, run)
    print(
        f"\n{cfg.model.name} on {cfg.data.name}: test top-1 {results['test_top1']:.4f}, "
        f"top-5 {results['test_top5']:.4f} ({results['test_examples']} test images), "
        f"best epoch {results['best_epoch']}, Keras latency p50 "
        f"{results['keras_latency_ms']['p50']:.2f} ms, trained in {results['train_seconds_this_session']:.0f} s"
    )
    print(f"wrote {run.path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))


__all__ = ["parse_args", "main", "EXIT_USAGE"]
