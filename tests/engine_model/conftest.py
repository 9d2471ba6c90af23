from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm

from .kit import random_model, tiny_config, train_sentencepiece


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory) -> Path:
    return train_sentencepiece(tmp_path_factory.mktemp("sp") / "tokenizer.model")


@pytest.fixture(scope="session")
def sp_size(sp_model) -> int:
    return spm.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()


@pytest.fixture(scope="session")
def glm_config(sp_size):
    return tiny_config(sp_size)


@pytest.fixture()
def native_model(glm_config):
    return random_model(glm_config)
