"""The analysis layer: what the finished runs mean. Tables and the team's report (report.py,
reference/), error-vs-flux (ablation.py), the latent probes (latent.py), saliency (saliency.py),
line widths (linewidths.py), the Data page's numbers (data_summary.py) and the meeting digest
(digest.py). It reads the registry through the engine and never fits anything itself."""
