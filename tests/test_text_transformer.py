"""The zoo's text transformer (``tokens_transformer``) and notebook 06's text part: training,
token deletion against a closed form, and the comparison's claims."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from workbench import models
from workbench.experiments import transformers_text


@pytest.fixture(scope="module")
def trained():
    model, info = models.zoo("tokens_transformer", progress=False)
    return model, info, models.zoo_data("tokens_transformer")


def test_the_text_transformer_learns_the_planted_words(trained):
    model, info, data = trained
    assert info["accuracy"] > 0.95
    assert info["arguments"]["length"] == data.input_shape[0]
    assert float(model.embedding.weight[0].detach().abs().max()) == 0.0  # padding: zeros
    applicable = {name for name in wb.methods() if wb.method_info(name).applies_to(model)}
    assert {"cp_lrp", "attn_lrp", "attention_rollout", "integrated_gradients"} <= applicable
    assert not {"lrp_epsilon", "deeplift_rescale", "guided_backprop"} & applicable


def test_the_builder_refuses_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="width must be a multiple of heads"):
        models.token_transformer(10, 2, 6, width=30, heads=4)


class TokenScores(nn.Module):
    """Logit of class c: the sum over the sentence of a fixed score per token id (pad: 0)."""

    def __init__(self, scores: torch.Tensor):
        super().__init__()
        self.scores = scores  # (vocabulary, classes)

    def forward(self, ids):
        return self.scores[ids].sum(1)


def test_token_deletion_matches_its_closed_form():
    """On an additive model the logit after deleting tokens is the sum of the kept tokens'
    scores; ranking by those scores deletes the largest first (MoRF) or last (LeRF)."""
    scores = torch.tensor([[0.0, 0.0], [1.0, -1.0], [4.0, 0.5], [-2.0, 3.0], [0.5, 0.5]])
    model = TokenScores(scores)
    ids = torch.tensor([[1, 2, 3, 4], [4, 4, 2, 1]])
    target = torch.tensor([0, 1])
    relevance = scores[ids, target[:, None]]  # each token's exact contribution
    morf = transformers_text.token_deletion(model, ids, relevance, target, "most_relevant_first")
    lerf = transformers_text.token_deletion(model, ids, relevance, target,
                                            "least_relevant_first")
    for row in range(2):
        own = relevance[row]
        full = float(own.sum())
        descending = own.sort(descending=True, stable=True).values
        ascending = own.sort(stable=True).values
        expected_morf = [full - float(descending[:k].sum()) for k in range(5)]
        expected_lerf = [full - float(ascending[:k].sum()) for k in range(5)]
        torch.testing.assert_close(morf[row], torch.tensor(expected_morf))
        torch.testing.assert_close(lerf[row], torch.tensor(expected_lerf))
    assert (morf[:, -1] == 0).all() and (lerf[:, -1] == 0).all()  # all padding: score 0
    # the exact contributions are the most faithful ranking there is: MoRF below LeRF
    assert bool((morf.mean(1) < lerf.mean(1)).all())


def test_token_deletion_refuses_bad_arguments():
    model = TokenScores(torch.zeros(5, 2))
    ids = torch.ones(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="order must be"):
        transformers_text.token_deletion(model, ids, torch.zeros(2, 3), torch.zeros(2).long(),
                                         "random")
    with pytest.raises(ValueError, match="one value per token"):
        transformers_text.token_deletion(model, ids, torch.zeros(2, 4), torch.zeros(2).long(),
                                         "most_relevant_first")


def test_a_seed_of_the_text_comparison_and_its_claims(trained):
    protocol = transformers_text.TextProtocol(sentences=12, ig_steps=8)
    result = transformers_text.run_text_seed(0, protocol, progress=False)
    assert result.accuracy > 0.95 and result.ids.shape == (12, 12)
    for label, relevance in result.relevance.items():
        assert relevance.shape == (12, 12), label
        assert 0.0 <= result.planted[label] <= 1.0
        curves = result.curves[label]
        assert len(curves["most_relevant_first"]) == 13 == len(curves["least_relevant_first"])
        assert curves["most_relevant_first"][0] == pytest.approx(
            curves["least_relevant_first"][0])  # nothing deleted yet: the same logits
    # the ground truth: AttnLRP finds the planted words far more often than chance (~0.12)
    assert result.planted["AttnLRP"] > 0.5
    claims = transformers_text.text_claims([result])
    assert len(claims) == 12 and all(len(c.values) == 1 for c in claims)
    table = transformers_text.text_table([result])
    assert list(table["method"])[0] in result.planted
    assert set(result.record()) == {"seed", "accuracy", "planted_share", "curves",
                                    "faithfulness"}
