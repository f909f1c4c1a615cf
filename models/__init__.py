"""Every model of the study, by name. Reading MODELS tells a newcomer every model there is.

One family a file: linear.py (Ridge, metadata Ridge), gbdt.py (LightGBM), cannon.py
(The Cannon-like quadratic model), mlp.py (MLP, residual MLP, global-feature MLP),
cnn.py (dilated and multi-scale CNNs), windows.py (top-K window CNN and transformer),
fusion.py (two-tower fusions), ceiling.py (the likelihood fit: the physics ceiling),
blindspot.py (the self-supervised blind-spot encoder and heads), probes.py (probes of its latent),
posterior.py (neural posterior estimation: a normalizing flow over the three labels).
All implement models/base.Model.
"""
from models import blindspot, cannon, ceiling, cnn, fusion, gbdt, linear, mlp, posterior, probes, windows

MODELS = {**linear.MODELS, **gbdt.MODELS, **mlp.MODELS, **cnn.MODELS, **windows.MODELS, **fusion.MODELS,
          **cannon.MODELS, **ceiling.MODELS, **blindspot.MODELS, **probes.MODELS, **posterior.MODELS}
