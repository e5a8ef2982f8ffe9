"""The text example: generated token data with planted signal words, the zoo's token classifier
explained at its embedding, and the highlighted-token rendering."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench import models, text_data
from workbench.text_view import highlighted_tokens, token_relevance


def test_planted_tokens_decide_the_class_and_are_marked():
    data = text_data.planted_tokens(n=200, length=10, seed=3)
    assert data.x_train.shape[1] == 10 and data.x_train.dtype == torch.int64
    for x, y, mask in ((data.x_train, data.y_train, data.mask_train),
                       (data.x_test, data.y_test, data.mask_test)):
        counts = mask.sum(1)
        assert ((counts >= 1) & (counts <= 2)).all()
        for ids, label, planted in zip(x, y, mask):
            words = data.words(ids)
            signal = set(text_data.SIGNAL_WORDS[data.classes[label]])
            assert {w for w, p in zip(words, planted) if p} <= signal
            assert not ({w for w, p in zip(words, planted) if not p}
                        & {w for ws in text_data.SIGNAL_WORDS.values() for w in ws})
            assert text_data.PAD not in words
    again = text_data.planted_tokens(n=200, length=10, seed=3)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.mask_test,
                                                                    data.mask_test)


@pytest.mark.parametrize("arguments, message", [
    (dict(length=1), "length"), (dict(n=3), "n must"), (dict(classes=("positive",)), "classes"),
])
def test_planted_tokens_refuses_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        text_data.planted_tokens(**arguments)


@pytest.fixture(scope="module")
def text_model():
    model, info = models.zoo("tokens_cnn", progress=False)
    return model, info, models.zoo_data("tokens_cnn")


def test_token_classifier_learns_the_planted_words(text_model):
    model, info, data = text_model
    assert info["accuracy"] > 0.95
    assert info["arguments"]["vocabulary_size"] == len(data.vocabulary)
    assert float(model.embedding.weight[0].detach().abs().max()) == 0.0  # padding embeds as zeros


@pytest.mark.parametrize("method", ["integrated_gradients", "deeplift_rescale"])
def test_relevance_at_the_embedding_falls_on_the_planted_words(text_model, method):
    """Ground truth: the class is decided by the planted words alone, so a correct attribution
    of the true class puts its largest relevance on a planted word, and far more relevance on
    planted words than on the filler."""
    model, _, data = text_model
    x, y, mask = data.x_test[:12], data.y_test[:12], data.mask_test[:12]
    attributions = wb.attribute(model, x, method, target=y, layer="embedding", baseline=0)
    relevance = token_relevance(attributions)
    assert relevance.shape == x.shape
    top = relevance.argmax(1)
    assert mask[torch.arange(len(x)), top].all()
    assert relevance[mask].mean() > 10 * relevance[~mask].abs().mean()


def test_text_attributions_agree_with_captum(text_model):
    captum = pytest.importorskip("captum.attr")
    model, _, data = text_model
    x, y = data.x_test[:6], data.y_test[:6]
    ours = wb.attribute(model, x, "integrated_gradients", target=y, layer="embedding",
                        baseline=0, steps=20)
    theirs = captum.LayerIntegratedGradients(model, model.embedding).attribute(
        x, baselines=torch.zeros_like(x), target=y, n_steps=20)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    ours = wb.attribute(model, x, "deeplift_rescale", target=y, layer="embedding",
                        baseline=0)
    theirs = captum.LayerDeepLift(model, model.embedding).attribute(
        x, baselines=torch.zeros_like(x), target=y)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_token_relevance_sums_over_the_embedding():
    attributions = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(token_relevance(attributions), attributions.sum(-1))
    with pytest.raises(ValueError, match="attributions"):
        token_relevance(torch.zeros(3))


def test_highlighted_tokens_colours_by_sign_and_escapes():
    html = highlighted_tokens(["good", "<b>", "bad"], torch.tensor([2.0, 0.0, -1.0]))
    assert html.count("<span") == 3 and "&lt;b&gt;" in html and "<b>" not in html
    assert "rgba(220, 38, 38, 1.000)" in html  # the largest positive: full red
    assert "rgba(37, 99, 235, 0.500)" in html  # half the largest magnitude, negative: blue
    assert "title=\"-1" in html
    with pytest.raises(ValueError, match="one relevance per token"):
        highlighted_tokens(["a", "b"], torch.zeros(3))


def test_explained_sentences_put_their_positive_relevance_on_the_planted_words(text_model):
    from workbench.experiments import text

    model, _, data = text_model
    sentences = text.explain_sentences(model, data, n=4)
    assert [s.words for s in sentences] == [data.words(ids) for ids in data.x_test[:4]]
    shares = text.planted_share(sentences)
    assert set(shares) == set(text.METHODS)
    # most of the positive relevance (~0.75 here) on the planted words, a tenth of the tokens;
    # the rest on their neighbours in the convolution's window
    planted_fraction = float(data.mask_test[:4].float().mean())
    assert all(share > 0.5 > 3 * planted_fraction for share in shares.values())
