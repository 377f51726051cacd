"""``python -m inference_service.training`` (`make model`): train from the simulator, or with
``--from-topics`` from the topics' history (:mod:`inference_service.training.from_topics`)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from fraud_core.cli import parse_settings
from inference_service.training import from_topics
from inference_service.training.settings import TrainCli
from inference_service.training.train import StressSet, train_and_register, warm_replay


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the card's headline figures as one JSON line. Exit codes: 0
    trained, 2 invalid setting; with --from-topics also 3 (the history cannot train a model) and 1."""
    settings = parse_settings(TrainCli, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.TRAIN_FROM_TOPICS:
        return from_topics.run(settings)
    return _from_simulator(settings)


def _from_simulator(args: TrainCli) -> int:
    """Train on the simulator's stream, score the stress set, print the headline figures."""
    from fraud_core.simulator import SimConfig, Simulator  # the real stream; imported only here

    sim = Simulator(SimConfig(seed=args.TRAIN_SEED, n_users=args.TRAIN_USERS))
    source = {
        "generator": "producers.simulator",
        "seed": args.TRAIN_SEED,
        "n_users": args.TRAIN_USERS,
        "events": args.TRAIN_EVENTS,
    }
    stress_seed = args.TRAIN_SEED + 1000 if args.TRAIN_STRESS_SEED is None else args.TRAIN_STRESS_SEED
    stress_sim = Simulator(SimConfig(seed=stress_seed, n_users=args.TRAIN_USERS, stress=True))
    warmup = args.TRAIN_STRESS_WARMUP_EVENTS
    stress_data, stress_txns = warm_replay(
        stress_sim.events(count=warmup + args.TRAIN_STRESS_EVENTS), stress_sim.profiles(), warmup
    )
    stress_source = {
        "generator": "producers.simulator (stress variant)",
        "seed": stress_seed,
        "n_users": args.TRAIN_USERS,
        "events": args.TRAIN_STRESS_EVENTS,
        "warmup_events": warmup,
    }
    card = train_and_register(
        sim.events(count=args.TRAIN_EVENTS),
        sim.profiles(),
        args.config,
        args.MODEL_DIR,
        source,
        promote=not args.TRAIN_NO_PROMOTE,
        stress=StressSet(stress_data, stress_txns, stress_source),
    )
    held = card.metrics["held_out"]
    stress = card.metrics["stress"]
    summary = {
        "version": card.version,
        "promoted": not args.TRAIN_NO_PROMOTE,
        "threshold": card.threshold,
        "block_threshold": card.block_threshold,
        "block_precision": held["actions"]["BLOCK"]["precision"],
        "pr_auc": held["pr_auc"],
        "recall_at_1pct_fpr": held["recall_at_1pct_fpr"],
        "pr_auc_without_velocity": card.ablation["held_out"]["pr_auc"],
        "stress": {
            source: {
                "precision": stress[source]["flagged"]["precision"],
                "block_precision": stress[source]["BLOCK"]["precision"],
                "recall": {k: v["recall"] for k, v in stress[source]["per_fraud_type"].items()},
            }
            for source in ("model", "rules", "both")
        },
        "stress_velocity_adds": card.ablation["velocity_adds_on_stress"],
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
