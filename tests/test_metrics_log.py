"""The metrics log: JSON lines appended per write, and TensorBoard event files on request."""

import json

from prunephase import metrics_log


def test_metrics_log_appends_json_lines_and_tensorboard_events(tmp_path):
  log = metrics_log.MetricsLog(tmp_path / 'metrics.jsonl', tensorboard=True)
  log.write([{'stage': 'train', 'dense_seed': 1, 'epoch': 1, 'loss': 2.0, 'error': 0.5}])
  log.write([{'stage': 'train', 'dense_seed': 1, 'epoch': 2, 'loss': 1.0, 'error': 0.25}])
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['loss'] for r in rows] == [2.0, 1.0]
  assert any((tmp_path / 'tensorboard').iterdir())
