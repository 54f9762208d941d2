"""Run folders: resolved config, per-tick JSONL log, summary.json, PNG plots."""
