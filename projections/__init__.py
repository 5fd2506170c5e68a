"""Projections: the read models in Postgres, built from the log (``python -m projections``).

``runner`` reads Kafka and commits each batch with its offsets; ``store`` turns a batch into
set-based SQL; ``runs`` and ``workflows`` hold the per-event rules as pure folds.
"""
