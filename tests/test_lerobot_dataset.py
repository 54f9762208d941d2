"""The sim arm's scripted demos written as a LeRobotDataset and read back by LeRobot itself."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np

from rtctl.sim.arm_env import JOINT_NAMES
from rtctl.train.lerobot.data import CAMERA_KEY, load_columns, record_demos, write_demos


def test_demos_round_trip_through_lerobot_dataset(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from rtctl.sim.arm_expert import rollout_demos

    demos = rollout_demos("reach", 2, 5, 50, 1, 30.0, 1.0, "command")
    n = len(demos["states"])
    record_demos("reach", 2, 5, tmp_path / "ds", repo_id="rtctl/test_reach", v_max=1.0)

    ds = LeRobotDataset("rtctl/test_reach", root=tmp_path / "ds")
    assert ds.num_episodes == 2 and ds.num_frames == n == int(demos["length"].sum())
    assert ds.fps == 30 and ds.meta.video_keys == []
    assert ds.features["observation.state"]["names"] == list(JOINT_NAMES)
    assert ds.features["action"]["shape"] == (6,) and ds.features["observation.environment_state"]["shape"] == (4,)
    item = ds[3]
    assert item["task"] == "reach the target"
    np.testing.assert_allclose(item["action"].numpy(), demos["actions"][3], rtol=1e-6, atol=1e-6)
    # LeRobot's stats (normalisation) were computed from the frames
    np.testing.assert_allclose(ds.meta.stats["action"]["mean"], demos["actions"].mean(0), rtol=1e-4, atol=1e-4)

    cols = load_columns(tmp_path / "ds", "rtctl/test_reach")
    for key in ("states", "targets", "actions", "episode_index", "frame_index"):
        np.testing.assert_allclose(cols[key], demos[key], rtol=1e-6, atol=1e-6)

    # chunk queries, as LeRobot training asks for them: rows past the episode end are padding
    last = int(demos["length"][0]) - 1
    chunked = LeRobotDataset("rtctl/test_reach", root=tmp_path / "ds",
                             delta_timestamps={"action": [i / 30 for i in range(4)]})
    it = chunked[last - 1]
    assert it["action"].shape == (4, 6)
    assert it["action_is_pad"].tolist() == [False, False, True, True]


def test_images_stored_as_images(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    rng = np.random.default_rng(0)
    ep = np.array([0, 0, 0, 1, 1])
    demos = {"states": rng.normal(size=(5, 6)), "targets": rng.normal(size=(5, 4)),
             "actions": rng.normal(size=(5, 6)), "episode_index": ep}
    images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    write_demos(demos, tmp_path / "img", "rtctl/test_img", 30, "whack the target", images)
    ds = LeRobotDataset("rtctl/test_img", root=tmp_path / "img")
    assert ds.num_episodes == 2 and ds.num_frames == 5
    assert ds.features[CAMERA_KEY]["dtype"] == "image" and ds.meta.video_keys == []
    assert list((tmp_path / "img").rglob("*.mp4")) == []
    frame = ds[4][CAMERA_KEY]  # (3, H, W) float in [0, 1], LeRobot's image convention
    np.testing.assert_allclose(frame.permute(1, 2, 0).numpy() * 255, images[4], atol=1e-3)
