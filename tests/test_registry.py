"""Registries of pitch extractors and content encoders, and the features a voice model records."""
from __future__ import annotations

import dataclasses
import json

import pytest

import main
from engine.pitch import WorldPitch, make_pitch_extractor
from engine.registry import CONTENT_ENCODERS, PITCH_EXTRACTORS
from engine.session_config import SessionConfig
from engine.stream_session import StreamSession
from models.errors import ComoliveError
from training.train import TrainingRun
from models.voice_model import VoiceModel
from tests.helpers import tiny_model_config, tiny_run_config, write_tiny_cache


def _choices(command: str, option: str) -> tuple:
    sub = next(a for a in main.build_parser()._actions if a.dest == "command")
    return tuple(next(a for a in sub.choices[command]._actions if option in a.option_strings).choices)


def test_the_cli_and_the_panel_offer_what_the_registry_holds():
    for command in ("convert", "preprocess", "live", "stream", "tune"):
        assert _choices(command, "--pitch") == tuple(PITCH_EXTRACTORS), command
    assert isinstance(make_pitch_extractor("harvest"), WorldPitch)
    with pytest.raises(ComoliveError, match="unknown pitch extractor 'crepe'; choose one of: fcpe, dio, harvest"):
        make_pitch_extractor("crepe")
    assert "whisper" in CONTENT_ENCODERS


def test_a_model_trained_on_other_content_features_is_refused_live(tmp_path):
    model = VoiceModel.load(None)
    model.cfg = dataclasses.replace(model.cfg, content_encoder="hubert")
    stem = tmp_path / "hubert_model"
    model.save(stem)
    with pytest.raises(ComoliveError, match="reads 'hubert' content features, which the live session cannot"):
        StreamSession(SessionConfig(model=str(stem)))


def test_training_refuses_features_made_with_another_pitch_extractor(tmp_path):
    feats = write_tiny_cache(tmp_path / "feats", tiny_model_config())
    index = json.loads((feats / "index.json").read_text())
    (feats / "index.json").write_text(json.dumps({**index, "pitch": "dio"}))
    with pytest.raises(ComoliveError, match="pitch_extractor = 'dio', this run's \\[model\\] has 'fcpe'"):
        TrainingRun(feats, tmp_path / "run", tiny_run_config(steps=5), progress=False)
