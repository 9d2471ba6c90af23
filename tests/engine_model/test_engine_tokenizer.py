"""The ChatGLM2 token scheme on a tiny SentencePiece model."""

from __future__ import annotations

import pytest
import sentencepiece as spm
import torch

from asmr_daemon.engine.tokenizer import (
    SPECIAL_TOKENS,
    ChatGLM2Tokenizer,
    load_tokenizer,
)
from asmr_daemon.errors import ModelDirError


@pytest.fixture()
def tok(sp_model) -> ChatGLM2Tokenizer:
    return ChatGLM2Tokenizer.from_file(sp_model)


def test_ids_and_specials(tok, sp_size):
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.vocab_size == sp_size + 5
    assert tok.special_ids == {name: sp_size + i for i, name in enumerate(SPECIAL_TOKENS)}


def test_prompt_starts_with_gmask_sop(tok, sp_model):
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    text = "[Round 1]\n\n问：お兄ちゃん、おはよう。\n\n答："
    ids = tok.encode_prompt(text)
    assert ids[:2] == [tok.special_ids["[gMASK]"], tok.special_ids["sop"]]
    # What the original tokenizer does: EncodeAsPieces + PieceToId (== sp.encode, dummy prefix included).
    assert ids[2:] == [sp.piece_to_id(p) for p in sp.encode(text, out_type=str)]
    assert tok.encode_answer("哥哥，早上好。") == sp.encode("哥哥，早上好。")


def test_decode_drops_specials_and_dummy_prefix(tok):
    answer = "哥哥，早上好。\n好好休息吧。"
    ids = tok.encode_answer(answer)
    noisy = [tok.special_ids["sop"], *ids, tok.eos_id, tok.pad_id, tok.special_ids["eop"]]
    assert tok.decode(noisy) == answer
    assert tok.decode(tok.encode_prompt("お兄ちゃん")) == "お兄ちゃん"


def test_batch_left_pads(tok):
    a, b = tok.encode_prompt("おはよう"), tok.encode_prompt("ゆっくり休んでね。おやすみなさい。")
    ids, mask = tok.batch([a, b])
    assert ids.dtype == torch.long and ids.shape == (2, len(b))
    pad = len(b) - len(a)
    assert ids[0, :pad].tolist() == [0] * pad and ids[0, pad:].tolist() == a
    assert mask[0].tolist() == [0] * pad + [1] * len(a)
    assert ids[1].tolist() == b and mask[1].tolist() == [1] * len(b)


def test_load_tokenizer_needs_tokenizer_model(tmp_path, sp_model):
    with pytest.raises(ModelDirError, match="tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(sp_model.read_bytes())
    assert isinstance(load_tokenizer(tmp_path), ChatGLM2Tokenizer)
