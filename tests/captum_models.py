"""Small models with hand-set weights, after the toy models of Captum's own test suite
(``captum/testing/helpers/basic_models.py``); each names the Captum model it stands for, so that
the expected values ported from Captum's tests hold for it. Written here in our own words."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Clamp(nn.Module):
    """``1 - relu(1 - x)`` (Captum's ``BasicModel``): x clipped from above at 1."""

    def forward(self, x):
        return 1 - F.relu(1 - x)


class PaperExample1(nn.Module):
    """``relu(relu(x1) - 1 - relu(x2))`` (Captum's ``BasicModel2``; Sundararajan et al. 2017,
    arXiv:1703.01365, section 2, first example)."""

    def forward(self, x1, x2):
        return F.relu(F.relu(x1) - 1 - F.relu(x2))


class PaperExample2(nn.Module):
    """``relu(relu(x1 - 1) - relu(x2))`` (Captum's ``BasicModel3``; ibid., second example)."""

    def forward(self, x1, x2):
        return F.relu(F.relu(x1 - 1) - F.relu(x2))


class PaperExample2Divided(nn.Module):
    """``relu(relu(x1 - 1) - relu(x2) / d)[:, column]`` (Captum's ``BasicModel4_MultiArgs``)."""

    def forward(self, x1, x2, d, column=0):
        return F.relu(F.relu(x1 - 1) - F.relu(x2).div(d))[:, column]


class PaperExample2Weighted(nn.Module):
    """``relu(w[0] relu(x1 - 1) - w[1] relu(x2))[:, column]`` (Captum's
    ``BasicModel5_MultiArgs``); ``w`` a Python list."""

    def forward(self, x1, x2, w, column=0):
        return F.relu(F.relu(x1 - 1) * w[0] - F.relu(x2) * w[1])[:, column]


class SumClamp(nn.Module):
    """``1 - relu(1 - (x1 + x2))[:, 1]`` (Captum's ``BasicModel6_MultiTensor``)."""

    def forward(self, x1, x2):
        return 1 - F.relu(1 - (x1 + x2))[:, 1]


def _linear(weight, bias=None) -> nn.Linear:
    weight = torch.as_tensor(weight, dtype=torch.get_default_dtype())
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight = nn.Parameter(weight)
    if bias is not None:
        layer.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.get_default_dtype()))
    return layer


class ThreeLayer(nn.Module):
    """Captum's ``BasicModel_MultiLayer``: identity, then four units of ``sum(x) + (-10, 1, 1,
    1)``, ReLU, then two outputs ``sum(h) + (-1, 1)``; ``add_input`` is added to ``x`` first;
    ``multidim_output`` stacks the outputs into ``(N, 2, 2, 2)``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.linear0 = _linear(torch.eye(3), torch.zeros(3))
        self.linear1 = _linear(torch.ones(4, 3), [-10.0, 1.0, 1.0, 1.0])
        self.relu = nn.ReLU(inplace=inplace)
        self.linear2 = _linear(torch.ones(2, 4), [-1.0, 1.0])

    def forward(self, x, add_input=None, multidim_output=False):
        x = x if add_input is None else x + add_input
        out = self.linear2(self.relu(self.linear1(self.linear0(x))))
        if multidim_output:
            pair = torch.stack((out, 2 * out), dim=2)
            return torch.stack((pair, 4 * pair), dim=3)
        return out


class ThreeInputs(nn.Module):
    """``ThreeLayer(scale * (x1 + x2 + x3))`` (Captum's ``BasicModel_MultiLayer_MultiInput``)."""

    def __init__(self):
        super().__init__()
        self.model = ThreeLayer()

    def forward(self, x1, x2, x3, scale):
        return self.model(scale * (x1 + x2 + x3))


class TwoReLUs(nn.Module):
    """``2 relu(x1) + k relu(x2 - 1.5)`` (Captum's ``ReLUDeepLiftModel``)."""

    def __init__(self):
        super().__init__()
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x1, x2, k=2):
        return 2 * self.relu1(x1) + k * self.relu2(x2 - 1.5)


class TwoTanhs(nn.Module):
    """``2 tanh(x1) + 2 tanh(x2 - 1.5)`` (Captum's ``TanhDeepLiftModel``). The tanh are modules:
    Captum's DeepLIFT hooks modules only (a functional ``torch.tanh`` gets the plain gradient
    there; our engine sees either form)."""

    def __init__(self):
        super().__init__()
        self.tanh1, self.tanh2 = nn.Tanh(), nn.Tanh()

    def forward(self, x1, x2):
        return 2 * self.tanh1(x1) + 2 * self.tanh2(x2 - 1.5)


class ReLULinear(nn.Module):
    """``l3(relu([l1(x1), k l2(x2)]))`` with ``l1 = (3, 1, 0)``, ``l2 = (2, 3, 0)``, ``l3 = (1,
    1)`` (Captum's ``ReLULinearModel``)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.l1 = _linear([[3.0, 1.0, 0.0]])
        self.l2 = _linear([[2.0, 3.0, 0.0]])
        self.relu = nn.ReLU(inplace=inplace)
        self.l3 = _linear([[1.0, 1.0]])

    def forward(self, x1, x2, k=1):
        return self.l3(self.relu(torch.cat([self.l1(x1), k * self.l2(x2)], dim=1)))


class LinearMaxPoolLinear(nn.Module):
    """Identity, max over the four features, times one (Captum's ``LinearMaxPoolLinearModel``)."""

    def __init__(self):
        super().__init__()
        self.lin1 = _linear(torch.eye(4))
        self.pool1 = nn.MaxPool1d(4)
        self.lin2 = _linear([[1.0]])

    def forward(self, x):
        return self.lin2(self.pool1(self.lin1(x.unsqueeze(1)))[:, 0, :])


class OneConv(nn.Module):
    """Captum's ``BasicModel_ConvNet_One_Conv``: a 3x3 all-ones conv (biases -50, -75) on a
    1x4x4 image, ReLU, then four outputs ``sum(first five) - sum(last three)``, ReLU; ``x2`` is
    added to the image first."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, 1)
        self.conv1.weight = nn.Parameter(torch.ones(2, 1, 3, 3))
        self.conv1.bias = nn.Parameter(torch.tensor([-50.0, -75.0]))
        self.relu1 = nn.ReLU()
        self.fc1 = _linear(torch.cat([torch.ones(4, 5), -torch.ones(4, 3)], dim=1), torch.zeros(4))
        self.relu2 = nn.ReLU()

    def forward(self, x, x2=None):
        x = x if x2 is None else x + x2
        return self.relu2(self.fc1(self.relu1(self.conv1(x)).view(-1, 8)))


class SoftmaxMLP(nn.Module):
    """Three Linear layers with ReLUs and a softmax (Captum's ``SoftmaxModel``)."""

    def __init__(self, num_in: int, hidden: int, out: int):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(num_in, hidden), nn.Linear(hidden, hidden)
        self.lin3 = nn.Linear(hidden, out)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(self.lin3(self.relu2(self.lin2(self.relu1(self.lin1(x))))))


class InnerEmbedding(nn.Module):
    """An embedding inside a submodule, optionally summed with a second one (Captum's
    ``TextModule``)."""

    def __init__(self, vocabulary: int, width: int):
        super().__init__()
        self.inner_embedding = nn.Embedding(vocabulary, width)
        self.inner_embedding2 = nn.Embedding(vocabulary, width)

    def forward(self, tokens, other=None):
        embedded = self.inner_embedding(tokens)
        return embedded if other is None else embedded + self.inner_embedding2(other)


class TwoEmbeddings(nn.Module):
    """``sum over positions of linear2(relu(linear1(emb1(t1) + emb2(t2, t3))))`` with all-ones
    linear weights (Captum's ``BasicEmbeddingModel``, smaller)."""

    def __init__(self, vocabulary: int = 30, width: int = 6, hidden: int = 8):
        super().__init__()
        self.embedding1 = nn.Embedding(vocabulary, width)
        self.embedding2 = InnerEmbedding(vocabulary, width)
        self.linear1 = _linear(torch.ones(hidden, width))
        self.relu = nn.ReLU()
        self.linear2 = _linear(torch.ones(1, hidden), torch.zeros(1))

    def forward(self, t1, t2, t3=None):
        embedded = self.embedding1(t1) + self.embedding2(t2, t3)
        return self.linear2(self.relu(self.linear1(embedded))).sum(1)
