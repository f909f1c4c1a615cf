"""The "local tower": top-K pixel windows, a small CNN or transformer over them, residual on Ridge.

    topk_cnn          TopKWindowCNN
    topk_transformer  TopKWindowTransformer

Both fit, on the TRAIN split only unless said otherwise:
  1. Ridge on every pixel of every channel (closed form, the same solution as
     sklearn.linear_model.Ridge; alpha = a x n x mean pixel variance with a from decades
     0.01, 0.1, 1 extended at the ends and refined to half-decades (fit_ridge), chosen by the
     MSE on the VAL split: a hyper-parameter choice, the only use of val before training);
  2. a score per pixel by `criterion` (CRITERIA below; channels summed):
        "ridge"  |Ridge coefficient| x std of the pixel on train (the pixel's share of the
                 prediction's spread)
        "fstat"  sklearn.feature_selection.f_regression F statistic of the pixel vs log g on train
  3. K window centres by greedy non-maximum suppression: walk the pixels by decreasing score
     and accept one only if it is at least min_sep = max(1, min(window, n_pix // (2 K)))
     pixels from every centre accepted so far (window=8, K=256, 4096 pixels: 8 px, so two
     windows overlap by at most half and one strong line cannot take all K; K=1024: 2 px).
     If fewer than K pixels pass, the best remaining pixels fill up the list. The centres
     are saved with the model (`centers_`, also in arrays.npz as "centers");
  4. windows of +-window pixels around each centre (edge pixels repeated at the borders),
     cut inside the network from the full spectrum;
  5. the network learns the residual y - ridge(x); the prediction is ridge(x) + network(x).
     The residual it trains on is the Ridge's out-of-fold prediction on train
     (`oof_folds`=5 folds at the chosen alpha; 0 = in-sample): an in-sample Ridge with 4096
     pixels and ~2000 spectra fits the train split far better than it predicts (train R^2
     0.98 vs val 0.93 at noise 0.1; 0.93 vs 0.65 at noise 1.0), so in-sample residuals
     would teach the network a residual that is much smaller than the one it meets later.

TopKWindowCNN network: per window, a shared Conv1d(C -> channels, kernel 7, stride 2,
no padding) over the 2*window+1 pixels -> BatchNorm -> ReLU -> mean and max over the
positions -> Linear(2*channels, emb=4) -> ReLU; the K embeddings are flattened (the
head knows which window is which) -> Dropout -> Linear(K*emb, 28) -> ReLU -> Linear(28, 1).
~28 k parameters at K=256 (the report's size), most of them in the head.

TopKWindowTransformer network: each window (C x (2w+1) values) -> Linear -> a d_model=32
token, plus a learned position embedding of its pixel (one vector per chosen centre);
2 pre-norm encoder layers (2 heads, feed-forward 64, dropout 0.1 on the residual branches,
none on the attention weights) -> LayerNorm -> mean over the K tokens -> Linear(32, 1).

Params: K (256; 64..1024), window (8), criterion ("ridge"), alphas, oof_folds (5),
channels (topk_cnn: ctx.profile["cnn_channels"] unless given), lr, weight_decay.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.trainer import TorchModel, standardise_stats

ALPHAS = (0.01, 0.1, 1.0)   # x n * mean pixel variance; extended and refined by fit_ridge
_RIDGE_CACHE: dict[str, dict] = {}   # the last few fits: the four Ridge-based models share one per view


# --------------------------------------------------------------------------- Ridge
def _solve(A: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """(A + alpha I)^-1 b by Cholesky, in float64 (torch's LAPACK: 2-4x faster than scipy's here)."""
    M = torch.from_numpy(np.ascontiguousarray(A)).clone()
    M.diagonal().add_(alpha)
    L = torch.linalg.cholesky(M)
    return torch.cholesky_solve(torch.from_numpy(np.asarray(b, np.float64)).reshape(-1, 1), L).numpy().ravel()


def _key(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return h.hexdigest()


def fit_ridge(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, alphas=ALPHAS,
              oof_folds: int = 5, seed: int = 0) -> dict:
    """Ridge on the train rows X (n, p), alpha chosen on (Xv, yv) from `alphas` x n * mean
    pixel variance: the grid (decades by default) is extended by one step while the best
    alpha sits at one of its ends (at most 3 times), then refined at the geometric midpoints
    either side of the best (half-decades): typically 5 fits. Solved in the dual (n x n Gram, one Cholesky per alpha)
    when n <= p, else in the primal. Returns coef (p,), intercept, alpha, alpha_rel, val_mse
    per alpha tried and `oof` (n,): out-of-fold predictions on the train rows (each fold
    refitted at the chosen alpha; in-sample when oof_folds < 2). Results are memoised on
    the exact inputs (a few entries)."""
    X = np.asarray(X, np.float32)
    y = np.asarray(y, np.float64)
    key = _key(X, y, np.asarray(Xv, np.float32), np.asarray(yv, np.float64), tuple(alphas), oof_folds, seed)
    if key in _RIDGE_CACHE:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in _RIDGE_CACHE[key].items()}
    n, p = X.shape
    xm = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    Xc = X - xm
    ym = float(y.mean())
    yc = y - ym
    dual = n <= p
    A = (Xc @ Xc.T if dual else Xc.T @ Xc).astype(np.float64)
    scale = float(np.trace(A)) / p          # n * mean pixel variance
    Xvc = np.asarray(Xv, np.float32) - xm
    rhs = yc if dual else Xc.T.astype(np.float64) @ yc
    tried: dict[float, tuple[float, np.ndarray]] = {}

    def trial(rel):
        sol = _solve(A, rhs, rel * scale)
        w = (Xc.T @ sol.astype(np.float32)) if dual else sol.astype(np.float32)
        tried[rel] = (float(np.mean((Xvc @ w + ym - yv) ** 2)), w)

    grid = sorted(float(a) for a in alphas)
    for rel in grid:
        trial(rel)
    step = grid[1] / grid[0] if len(grid) > 1 else 10.0
    for _ in range(3):   # extend the grid when the best alpha sits at one of its ends
        best_rel = min(tried, key=lambda r: tried[r][0])
        if len(grid) > 1 and best_rel == min(tried):
            trial(best_rel / step)
        elif len(grid) > 1 and best_rel == max(tried):
            trial(best_rel * step)
        else:
            break
    if len(grid) > 1:    # refine: the geometric midpoints either side of the best
        best_rel = min(tried, key=lambda r: tried[r][0])
        for rel in (best_rel / np.sqrt(step), best_rel * np.sqrt(step)):
            trial(float(rel))
    rel = min(tried, key=lambda r: tried[r][0])
    w = tried[rel][1]
    alpha = rel * scale
    oof = (Xc @ w).astype(np.float64) + ym
    if oof_folds >= 2:   # each fold refitted at the chosen alpha, centred on its own train rows
        folds = np.random.default_rng(seed).permutation(n) % oof_folds
        for f in range(oof_folds):
            te, tr = folds == f, folds != f
            ymf = float(y[tr].mean())
            if dual:
                Kt = A[np.ix_(tr, tr)]
                r = Kt.mean(axis=1)
                m = float(r.mean())
                Ke = A[np.ix_(te, tr)]
                sol = _solve(Kt - r[:, None] - r[None, :] + m, y[tr] - ymf, alpha)
                oof[te] = (Ke - Ke.mean(axis=1, keepdims=True) - r[None, :] + m) @ sol + ymf
            else:
                mt = Xc[tr].mean(axis=0, dtype=np.float64)
                Xe = Xc[te].astype(np.float64)
                At = A - Xe.T @ Xe - tr.sum() * np.outer(mt, mt)
                wf = _solve(At, Xc[tr].T.astype(np.float64) @ (y[tr] - ymf), alpha)
                oof[te] = (Xe - mt) @ wf + ymf
    out = {"coef": w, "intercept": float(ym - xm.astype(np.float64) @ w.astype(np.float64)), "alpha": float(alpha),
           "alpha_rel": float(rel), "val_mse": {float(k): v[0] for k, v in sorted(tried.items())},
           "oof": np.asarray(oof, np.float64)}
    while len(_RIDGE_CACHE) >= 4:
        _RIDGE_CACHE.pop(next(iter(_RIDGE_CACHE)))
    _RIDGE_CACHE[key] = out
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


# --------------------------------------------------------------------------- pixel choice
def score_ridge(X: np.ndarray, y: np.ndarray, ridge: dict, **kw) -> np.ndarray:
    return np.abs(ridge["coef"]) * X.std(axis=0)


def score_fstat(X: np.ndarray, y: np.ndarray, ridge: dict, **kw) -> np.ndarray:
    from sklearn.feature_selection import f_regression
    f, _ = f_regression(X, y)
    return np.nan_to_num(f, nan=0.0, posinf=0.0)


# criterion name -> f(X_train (n, C*P), y_train, ridge fit, view=the train View, ctx=FitContext)
#   -> score (C*P,). A criterion sees the train split only (and ctx.dataset for what does not
#   depend on any split, e.g. the simulator's wavelengths).
def score_fisher(X: np.ndarray, y: np.ndarray, ridge: dict, view=None, ctx=None, **kw) -> np.ndarray:
    """Physics-guided: mean log g Fisher information per pixel, Teff and [M/H] marginalised, from
    the simulator's Jacobian at the labels of up to 200 TRAIN stars and their clean error vectors
    (core/explain). The ranking does not depend on the noise level (it scales every pixel alike)."""
    from core.physics import fisher
    ds = getattr(ctx, "dataset", None)
    if ds is None or not ds.has_meta:
        raise ValueError("criterion 'fisher' needs a data set made by the simulator")
    rows = view.index[:200]
    _, err = ds.read(rows)
    _, jac = fisher.jacobian(ds.labels[rows])
    _, F = fisher.fisher(jac, err)
    return fisher.marginal_pixel_info(jac, err, F).mean(0)


CRITERIA = {"ridge": score_ridge, "fstat": score_fstat, "fisher": score_fisher}


def min_separation(K: int, window: int, n_pix: int) -> int:
    return max(1, min(int(window), int(n_pix) // (2 * int(K))))


def select_centers(score: np.ndarray, K: int, min_sep: int) -> np.ndarray:
    """Greedy non-maximum suppression (see the module docstring); sorted pixel indices."""
    score = np.asarray(score, np.float64)
    P = score.size
    K = min(int(K), P)
    order = np.argsort(-score, kind="stable")
    blocked = np.zeros(P, bool)
    chosen = []
    for i in order:
        if not blocked[i]:
            chosen.append(int(i))
            blocked[max(0, i - min_sep + 1):i + min_sep] = True
            if len(chosen) == K:
                break
    if len(chosen) < K:
        have = set(chosen)
        chosen += [int(i) for i in order if int(i) not in have][:K - len(chosen)]
    return np.sort(np.array(chosen, dtype=np.int64))


class WindowCutter(nn.Module):
    """(n, C, P) spectrum -> (n, C, K, 2w+1) windows around the saved centres (edges repeated)."""

    def __init__(self, centers: np.ndarray, window: int, n_pix: int):
        super().__init__()
        idx = np.clip(np.asarray(centers)[:, None] + np.arange(-window, window + 1)[None, :], 0, n_pix - 1)
        self.register_buffer("centers", torch.as_tensor(np.asarray(centers), dtype=torch.long))
        self.register_buffer("idx", torch.as_tensor(idx, dtype=torch.long))

    def forward(self, x):
        return x[:, :, self.idx]


# --------------------------------------------------------------------------- networks
class WindowEncoder(nn.Module):
    """Shared small CNN over each window -> one `emb`-vector per window: (n, C, K, L) -> (n, K, emb).
    `film` (n, 2*channels) optionally scales and shifts the conv feature maps (FiLM).

    The convolution is written as unfold + Linear with the channels last, so that BatchNorm
    and the pooling run on contiguous (windows x positions, channels) arrays: on the project's
    CPU this is ~5x faster than nn.Conv1d + BatchNorm1d on (windows, channels, positions)."""

    def __init__(self, in_ch: int, L: int, channels: int = 16, emb: int = 4, kernel: int = 9, stride: int = 4):
        super().__init__()
        self.kernel, self.stride = min(kernel, L), stride
        self.conv = nn.Linear(in_ch * self.kernel, channels)      # a Conv1d(in_ch, channels, kernel, stride)
        self.bn = nn.BatchNorm1d(channels)
        self.proj = nn.Linear(2 * channels, emb)
        self.channels = channels

    def forward(self, w, film=None):
        n, c, K, L = w.shape
        cols = w.unfold(3, self.kernel, self.stride)                              # n, C, K, L', k
        Lp = cols.shape[3]
        cols = cols.permute(0, 2, 3, 1, 4).reshape(n * K * Lp, c * self.kernel)
        return self._tail(self.bn(self.conv(cols)).view(n, K, Lp, self.channels), film)

    def encode(self, x, cut: "WindowCutter", w_mean, w_std, film=None):
        """forward((cut(x) - w_mean) / w_std, film) from the whole spectrum x (n, C, P). Training, or with
        gradients on (saliency), it is exactly that; in inference (eval mode, no gradients) the window
        standardisation and the BatchNorm are folded into the convolution's weights and a per-position
        bias, and the convolution's columns are gathered straight from x: one gather and one matmul per
        input channel, instead of two window copies, a permuted copy and a BatchNorm pass (the same
        numbers to float32 rounding; tests/test_torch_models.py pins it)."""
        if self.training or torch.is_grad_enabled():
            return self(((cut(x) - w_mean) / w_std), film)
        n, c, _ = x.shape
        K, L = cut.idx.shape
        pos = torch.arange(0, L - self.kernel + 1, self.stride, device=x.device)[:, None] \
            + torch.arange(self.kernel, device=x.device)[None, :]                  # L', k
        idx = cut.idx[:, pos]                                                      # K, L', k: pixel of each column
        Lp = idx.shape[1]
        s = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        wf = (self.conv.weight * s[:, None]).view(self.channels, c, self.kernel) / w_std.view(1, c, 1)
        bf = (self.conv.bias - self.bn.running_mean) * s + self.bn.bias
        m = w_mean[0][:, :, pos]                                                   # C, K, L', k
        bias = bf - torch.einsum("ckpj,hcj->kph", m, wf)                            # K, L', ch
        h = None
        for ci in range(c):
            cols = x[:, ci][:, idx].reshape(n * K * Lp, self.kernel)
            hc = cols @ wf[:, ci].T
            h = hc if h is None else h.add_(hc)
        h = h.view(n, K, Lp, self.channels).add_(bias)
        if film is not None:
            gamma, beta = film.chunk(2, dim=1)
            h.mul_(1 + gamma[:, None, None, :]).add_(beta[:, None, None, :])
        h.relu_()
        parts = h.unbind(2)                         # mean and max over the L' positions, elementwise
        top, tot = parts[0], parts[0]
        for q in parts[1:]:
            top, tot = torch.maximum(top, q), tot + q
        wa, wb = self.proj.weight[:, :self.channels], self.proj.weight[:, self.channels:]
        return torch.relu(torch.nn.functional.linear(tot, wa / Lp) + torch.nn.functional.linear(top, wb, self.proj.bias))

    def _tail(self, h, film):
        """FiLM, ReLU, mean and max over the positions, the projection: (n, K, L', ch) -> (n, K, emb)."""
        if film is not None:
            gamma, beta = film.chunk(2, dim=1)                                   # (n, ch) each
            h = h * (1 + gamma[:, None, None, :]) + beta[:, None, None, :]
        h = torch.relu(h)
        h = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=2)                     # n, K, 2 ch
        return torch.relu(self.proj(h))


class TopKCNNNet(nn.Module):
    def __init__(self, in_ch, n_pix, centers, window, channels=16, emb=4, hidden=28, dropout=0.1):
        super().__init__()
        K, L = len(centers), 2 * window + 1
        self.cut = WindowCutter(centers, window, n_pix)
        self.register_buffer("w_mean", torch.zeros(1, in_ch, K, L))
        self.register_buffer("w_std", torch.ones(1, in_ch, 1, 1))
        self.enc = WindowEncoder(in_ch, L, channels, emb)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(K * emb, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 1))

    def windows(self, x):
        return (self.cut(x) - self.w_mean) / self.w_std

    def forward(self, x):
        return self.head(self.enc.encode(x, self.cut, self.w_mean, self.w_std))


class Block(nn.Module):
    """Pre-norm transformer encoder layer (nanoGPT-style, no causal mask). Attention weights are
    not dropped out, which lets F.scaled_dot_product_attention use its fused kernel (a dropout
    mask on the K x K attention matrix made training ~10x slower on the CPU)."""

    def __init__(self, d: int, n_heads: int, ff: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        n, T, D = x.shape
        q, k, v = self.qkv(self.n1(x)).view(n, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, T, D)
        x = x + self.drop(self.proj(a))
        return x + self.drop(self.ff(self.n2(x)))


class TopKTransformerNet(nn.Module):
    def __init__(self, in_ch, n_pix, centers, window, d_model=32, n_heads=2, n_layers=2, ff=64, dropout=0.1):
        super().__init__()
        K, L = len(centers), 2 * window + 1
        self.cut = WindowCutter(centers, window, n_pix)
        self.register_buffer("w_mean", torch.zeros(1, in_ch, K, L))
        self.register_buffer("w_std", torch.ones(1, in_ch, 1, 1))
        self.tok = nn.Linear(in_ch * L, d_model)
        self.pos = nn.Parameter(torch.randn(K, d_model) * 0.02)   # one learned vector per chosen pixel
        self.blocks = nn.Sequential(*[Block(d_model, n_heads, ff, dropout) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x):
        w = (self.cut(x) - self.w_mean) / self.w_std                               # n, C, K, L
        n, c, K, L = w.shape
        t = self.tok(w.permute(0, 2, 1, 3).reshape(n, K, c * L)) + self.pos
        return self.head(self.norm(self.blocks(t)).mean(dim=1))


# --------------------------------------------------------------------------- models
class RidgeWindowsModel(TorchModel):
    """Shared fitting of the Ridge base and the window centres; subclasses build the network."""
    hyper_params = ("K", "window", "criterion", "alphas", "oof_folds", "residual")
    family = "windows"
    param_defaults = {"criterion": "ridge", "window": 8}

    def _ridge_and_centers(self, train, val, ctx):
        p = self.params
        K, window = int(p.get("K", 256)), int(p.get("window", 8))
        criterion = str(p.get("criterion", "ridge"))
        if criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
        n, C, P = train.x.shape
        if not 1 <= K <= P:
            raise ValueError(f"K must be between 1 and {P}")
        X = train.x.reshape(n, -1)
        y = train.y[:, ctx.target].astype(np.float64)
        ridge = fit_ridge(X, y, val.x.reshape(len(val.x), -1), val.y[:, ctx.target].astype(np.float64),
                          alphas=tuple(p.get("alphas", ALPHAS)), oof_folds=int(p.get("oof_folds", 5)),
                          seed=int(ctx.seed))
        score = np.asarray(CRITERIA[criterion](X, y, ridge, view=train, ctx=ctx), np.float64)
        score = score.reshape(-1, P).sum(axis=0)   # (C*P,) or (P,) -> one score per pixel
        sep = min_separation(K, window, P)
        centers = select_centers(score, K, sep)
        self.ridge_oof_ = ridge["oof"]
        self.centers_ = centers
        self.state_ = {"ridge_coef": ridge["coef"], "ridge_intercept": np.array([ridge["intercept"]]),
                       "centers": centers, "score": score.astype(np.float32)}
        # window statistics on train (per window pixel mean, per channel std)
        idx = np.clip(centers[:, None] + np.arange(-window, window + 1)[None, :], 0, P - 1)
        wins = train.x[:, :, idx]                                                   # n, C, K, L
        self.state_["w_mean"] = wins.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
        self.state_["w_std"] = standardise_stats(wins - self.state_["w_mean"], axis=(0, 2, 3))[1]
        self.arch_ = {"in_ch": C, "n_pix": P, "K": K, "window": window, "criterion": criterion,
                      "min_sep": sep, "ridge_alpha": ridge["alpha"], "ridge_alpha_rel": ridge["alpha_rel"],
                      "channels_in": list(train.channels)}

    def _prepare(self, train, val, ctx):
        self._ridge_and_centers(train, val, ctx)

    def _restore(self):
        self.centers_ = self.state_["centers"]

    def _base(self, view):
        if not self.params.get("residual", True):
            return 0.0
        X = view.x.reshape(len(view.x), -1)
        return (X @ self.state_["ridge_coef"]).astype(np.float64) + float(self.state_["ridge_intercept"][0])

    def _base_train(self, train):
        if not self.params.get("residual", True):
            return 0.0
        return self.ridge_oof_ if getattr(self, "ridge_oof_", None) is not None else self._base(train)

    def _inputs(self, view):
        return view.x

    def _base_torch(self, x):
        if not self.params.get("residual", True):
            return 0.0
        coef = torch.as_tensor(self.state_["ridge_coef"], dtype=x.dtype)
        return x.reshape(len(x), -1) @ coef + float(self.state_["ridge_intercept"][0])

    def _set_window_stats(self, net):
        net.w_mean.copy_(torch.as_tensor(self.state_["w_mean"]))
        net.w_std.copy_(torch.as_tensor(self.state_["w_std"]))
        return net

    @property
    def alpha_(self) -> float:
        """The Ridge base's alpha (chosen on val); the engine records it with the metrics."""
        return float(self.arch_.get("ridge_alpha", float("nan")))

    @property
    def n_params_total(self) -> int:
        """Network plus the Ridge base (C*P coefficients + intercept)."""
        return self.n_params + int(self.state_["ridge_coef"].size) + 1 if self.state_ else self.n_params

    def fit(self, train, val, ctx):
        super().fit(train, val, ctx)
        self.ridge_oof_ = None
        return self


class TopKWindowCNNModel(RidgeWindowsModel):
    hyper_params = ("channels", "emb", "hidden", "dropout")
    family = "topk_cnn"
    differentiable = True
    lr = 2e-3

    def _prepare(self, train, val, ctx):
        super()._prepare(train, val, ctx)
        self.arch_["channels"] = int(self.params.get("channels") or ctx.profile.get("cnn_channels", 16))

    def _build(self):
        a = self.arch_
        return self._set_window_stats(TopKCNNNet(a["in_ch"], a["n_pix"], self.state_["centers"], a["window"],
                                                 a["channels"], int(self.params.get("emb", 4)),
                                                 int(self.params.get("hidden", 28)),
                                                 float(self.params.get("dropout", 0.1))))


class TopKWindowTransformerModel(RidgeWindowsModel):
    hyper_params = ("d_model", "n_heads", "n_layers", "ff", "dropout")
    family = "topk_transformer"
    differentiable = True
    lr = 1e-3

    def _build(self):
        a, p = self.arch_, self.params
        return self._set_window_stats(TopKTransformerNet(
            a["in_ch"], a["n_pix"], self.state_["centers"], a["window"], int(p.get("d_model", 32)),
            int(p.get("n_heads", 2)), int(p.get("n_layers", 2)), int(p.get("ff", 64)), float(p.get("dropout", 0.1))))


MODELS = {"topk_cnn": TopKWindowCNNModel, "topk_transformer": TopKWindowTransformerModel}
