"""Projections: the read models in Postgres, built from the log (``python -m projections``).

``runner`` reads Kafka and commits each batch with its offsets; ``store`` turns a batch into
set-based SQL; ``runs`` and ``workflows`` hold the per-event rules as pure folds. The tables,
their rows, the offsets and the NOTIFY channels are the read model's, shared with the query
API and the replay tooling (``read_model``).
"""
