"""The Predict page: drop in a spectrum (or take an example from the test split) and read its log g
from every trained model, with an uncertainty per model, a recommended value and an
out-of-distribution check. An HDF5 file of many spectra gives a table to download as CSV.

Thin: reading, resampling, normalising and predicting are core/predict/; this file only draws.
"""
import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core import predict as P
from core.analysis import data_summary
from pages._ui import appstate, matched_panel

AX_WAVE = "wavelength [Å]"
BLUE, GREY, RED, SHADE = "#1f5f99", "#8a94a3", "#b8432f", "#e3c9c4"


@st.cache_data(show_spinner=False, max_entries=16)
def _predict_bytes(data: bytes, name: str, ds_name: str, fingerprint: str, runs: tuple, noise, normalise: str,
                   research: bool = False, medium: str = "auto", rv="auto", physics: bool = False,
                   resolution="auto"):
    """Read and predict an upload (cached per file content, data set, trained runs and options)."""
    ds = appstate.load_dataset(ds_name)
    item = P.read_bytes(data, name)
    if isinstance(item, P.Batch):
        return "batch", P.predict_batch(item, ds, noise, normalise=normalise, research=research)
    return "single", P.predict(item, ds, noise, normalise=normalise, research=research, medium=medium, rv=rv,
                               physics=physics, resolution=resolution)


@st.cache_data(show_spinner=False, max_entries=16)
def _predict_example(k: int, level: float, ds_name: str, fingerprint: str, runs: tuple, noise, normalise: str,
                     research: bool = False, shift_kms: float = 0.0, rv="auto", physics: bool = False):
    ds = appstate.load_dataset(ds_name)
    item = P.example(ds, k, level)
    if shift_kms:   # the example star moved to a radial velocity, to see the correction at work
        from core.predict.frame import doppler
        item.wave = item.wave * doppler(shift_kms)
        item.name += f", moved to {shift_kms:+.0f} km/s"
        item.rv = None                       # unknown to Predict: measured and removed
    return P.predict(item, ds, noise, normalise=normalise, research=research, rv=rv, physics=physics)


def _nl(x) -> str:
    return "auto (from the spectrum's S/N)" if x == "auto" else f"{P.nl_text(x)}"


def spectrum_chart(r: dict, window) -> alt.LayerChart:
    g = r["_grid"]
    df = pd.DataFrame({"wave": g["wave"], "flux": g["flux"], "lo": g["flux"] - g["error"], "hi": g["flux"] + g["error"],
                       "covered": g["covered"]})
    df = df[(df.wave >= window[0]) & (df.wave <= window[1])]
    x = alt.X("wave:Q", title=AX_WAVE, scale=alt.Scale(domain=list(window), nice=False))
    layers = []
    miss = [m for m in r["coverage"]["missing_ranges_A"] if m[1] >= window[0] and m[0] <= window[1]]
    if miss:
        layers.append(alt.Chart(pd.DataFrame(miss, columns=["start", "end"]).assign(what="not in the upload (filled)"))
                      .mark_rect(opacity=0.5, clip=True).encode(
            x=alt.X("start:Q", scale=alt.Scale(domain=list(window), nice=False)), x2="end:Q",
            color=alt.Color("what:N", scale=alt.Scale(range=[SHADE]), legend=alt.Legend(title=None, orient="top-right"))))
    cov = df[df.covered]
    layers.append(alt.Chart(cov).mark_area(color="#9ec3e6", opacity=0.7, clip=True).encode(
        x=x, y=alt.Y("lo:Q", title="normalised flux", scale=alt.Scale(zero=False)), y2="hi:Q"))
    layers.append(alt.Chart(df).mark_line(color=BLUE, strokeWidth=0.8, clip=True).encode(
        x=x, y="flux:Q", tooltip=[alt.Tooltip("wave:Q", format=".2f", title="λ [Å]"), alt.Tooltip("flux:Q", format=".4f")]))
    title = f"{r['file']} on the model grid ({len(g['wave']):,} pixels, normalised as in training)"
    if g.get("fit") is not None:
        fit = _fit_frame(g, window)
        layers.append(alt.Chart(fit).mark_line(color=RED, strokeWidth=0.9, clip=True).encode(
            x=x, y="fit:Q", tooltip=[alt.Tooltip("wave:Q", format=".2f", title="λ [Å]"),
                                     alt.Tooltip("fit:Q", format=".4f", title="simulator's best fit")]))
        title += "; red: the simulator's best fit"
    return alt.layer(*layers, title=title).properties(height=300)


def _fit_frame(g: dict, window) -> pd.DataFrame:
    fit = pd.DataFrame({"wave": g["wave"], "fit": g["fit"], "resid": (g["flux"] - g["fit"]) / g["error"]})
    return fit[(fit.wave >= window[0]) & (fit.wave <= window[1])]


def residual_chart(r: dict, window) -> alt.Chart:
    x = alt.X("wave:Q", title=AX_WAVE, scale=alt.Scale(domain=list(window), nice=False))
    return alt.Chart(_fit_frame(r["_grid"], window), title="Residuals of the simulator's best fit").mark_line(
        color=GREY, strokeWidth=0.7, clip=True).encode(x=x, y=alt.Y("resid:Q", title="residual / σ")).properties(
        height=200)


def kiel_chart(r: dict, ds) -> alt.LayerChart:
    """The star on the Kiel diagram over the training grid: the simulator fit's Teff and log g with its 1σ
    ellipse, and the recommended log g with its error bar at that Teff."""
    pf, rec = r["physics_fit"], r["recommended"]
    grid = pd.DataFrame({"teff": ds.labels[:, 0], "logg": ds.labels[:, 1]}).sample(
        n=min(1500, len(ds.labels)), random_state=0)
    cov = np.array(pf["cov"])[:2, :2]
    w, v = np.linalg.eigh(cov)
    a = np.linspace(0, 2 * np.pi, 90)
    ell = (v @ (np.sqrt(np.clip(w, 0, None))[:, None] * np.vstack([np.cos(a), np.sin(a)]))).T + [pf["teff"], pf["logg"]]
    ex = alt.X("teff:Q", title="Teff [K]", scale=alt.Scale(reverse=True, zero=False))
    ey = alt.Y("logg:Q", title="log g [dex]", scale=alt.Scale(reverse=True, zero=False))
    base = alt.Chart(grid).mark_circle(size=6, color="#c9ced6", opacity=0.6).encode(x=ex, y=ey)
    ring = alt.Chart(pd.DataFrame({"teff": ell[:, 0], "logg": ell[:, 1], "i": np.arange(len(ell))})).mark_line(
        color=RED).encode(x=ex, y=ey, order="i:Q")
    pts = pd.DataFrame({"teff": [pf["teff"]] * 2, "logg": [pf["logg"], rec["value"]],
                        "what": ["simulator fit (1σ ellipse)", "recommended log g (±)"],
                        "lo": [np.nan, rec["value"] - rec["uncertainty"]], "hi": [np.nan, rec["value"] + rec["uncertainty"]]})
    dots = alt.Chart(pts).mark_point(filled=True, size=60).encode(
        x=ex, y=ey, color=alt.Color("what:N", scale=alt.Scale(range=[BLUE, RED]), legend=alt.Legend(
            title=None, orient="bottom-left")), tooltip=["what", alt.Tooltip("teff:Q", format=".0f"),
                                                         alt.Tooltip("logg:Q", format=".2f")])
    bar = alt.Chart(pts.dropna()).mark_rule(color=BLUE).encode(x="teff:Q", y="lo:Q", y2="hi:Q")
    return alt.layer(base, ring, bar, dots, title="The star on the Kiel diagram, over the training grid").properties(
        height=320)


def saliency_chart(r: dict, window):
    """The recommended model's saliency for this spectrum, in 4-pixel bins (kept readable when spiky)."""
    sal = r.get("_saliency")
    if not sal or sal.get("values") is None:
        return None
    imp = np.asarray(sal["values"], dtype=np.float64)
    wave = r["_grid"]["wave"]
    if imp.size != wave.size or not np.isfinite(imp).all() or imp.max() <= 0:
        return None
    nb = 4
    n = imp.size // nb * nb
    w = wave[:n].reshape(-1, nb)
    val = imp[:n].reshape(-1, nb).sum(1)
    df = pd.DataFrame({"start": w[:, 0], "end": w[:, -1], "saliency": val / val.max()})
    df = df[(df.end >= window[0]) & (df.start <= window[1])]
    bars = alt.Chart(df).mark_rect(color=RED, opacity=0.75, clip=True).encode(
        x=alt.X("start:Q", title=AX_WAVE, scale=alt.Scale(domain=list(window), nice=False)), x2="end:Q",
        y=alt.Y("saliency:Q", title="saliency [max = 1]", scale=alt.Scale(domain=[0, 1])), y2=alt.datum(0),
        tooltip=[alt.Tooltip("start:Q", format=".1f", title="from λ [Å]"), alt.Tooltip("saliency:Q", format=".3f")])
    return alt.layer(bars, title=f"Where {sal['model']} looks in this spectrum: {sal['kind']}").properties(height=220)


def show_single(r: dict, ds) -> None:
    st.subheader(r["file"])
    st.caption(f"Read as {r['format']}." + "".join(f" {n[0].upper()}{n[1:]}." for n in r["notes"]))
    rec = r["recommended"]
    truth = r.get("truth")
    if not rec.get("agree", True):
        st.error(f"**No single answer**: {rec['verdict']}. The value below is the best predictor's at this S/N; "
                 f"read it with the others in the table.", icon=":material/error:")
    if rec.get("outside_grid"):
        st.warning("**Outside the training grid**: the recommended log g is outside the log g range the models "
                   "were trained on; it is an extrapolation.", icon=":material/warning:")
    cols = st.columns([1.55, 0.85, 1.0, 1.3, 0.9] if truth else [1.6, 1.1, 1.3, 1])
    cols[0].metric("recommended log g [dex]", f"{rec['value']:.2f} ± {rec['uncertainty']:.2f}",
                   help=f"{rec['model']}: {rec['why']}")
    i = 1
    if truth:
        cols[1].metric("true log g [dex]", f"{truth['logg']:.2f}", delta=f"{rec['value'] - truth['logg']:+.2f} off",
                       delta_color="off", delta_arrow="off")
        i = 2
    ob = r["other_best"]
    cols[i].metric("Teff [K]", f"{ob['teff']['value']:.0f} ± {ob['teff']['uncertainty']:.0f}" if "teff" in ob else "—",
                   help=(f"{ob['teff']['model']}" + ("" if ob["teff"]["scored"] else ": fitted jointly with log g, not "
                                                     "scored on the test split")) if "teff" in ob else "no Teff model")
    cols[i + 1].metric("[M/H] [dex]", f"{ob['mh']['value']:+.2f} ± {ob['mh']['uncertainty']:.2f}" if "mh" in ob else "—",
                       help=(f"{ob['mh']['model']}" + ("" if ob["mh"]["scored"] else ": fitted jointly with log g, "
                                                       "not scored on the test split")) if "mh" in ob else "no [M/H] model")
    cols[i + 2].metric("S/N per pixel", f"{r['snr']['value']:.0f}", help=r["snr"]["how"],
                       delta=f"→ level {P.nl_text(r['noise_level']['value'])} models", delta_color="off",
                       delta_arrow="off")
    st.caption(f"Recommended: **{rec['model']}**, {rec['why']}."
               + (f" True labels of this test star: Teff {truth['teff']:.0f} K, [M/H] {truth['mh']:+.2f} dex."
                  if truth else ""))
    ood = r["ood"]
    if ood["in_distribution"]:
        st.success(f"In distribution: {ood['verdict']}.", icon=":material/check_circle:")
    else:
        st.warning("**Out of distribution**: " + ood["verdict"] + ".\n\n" + "\n".join(f"- {f[0].upper()}{f[1:]}"
                                                                                     for f in ood["flags"]),
                   icon=":material/warning:")
    if r["coverage"]["missing_pixels"]:
        st.info(f"Coverage: {r['coverage']['statement']}.", icon=":material/info:")
    fr = r.get("frame")
    if fr:
        v = fr["rv"]
        rv_words = (f"radial velocity **{v['value']:+.1f}" + (f" ± {v['sigma']:.1f}" if v.get("sigma") is not None else "")
                    + f" km/s**, shifted to rest ({v['how']})" if v["applied"] else f"radial velocity: {v['how']}")
        st.caption(f"Frame: wavelengths {fr['medium_how']}" + (f" ({fr['medium_source']})" if fr.get("medium_source")
                                                                else "") + f"; {rv_words}"
                   + (f"; resolution: {fr['resolution']['how']}" if fr.get("resolution") else "") + ".")

    st.markdown(f"**log g from every model trained at noise level {P.nl_text(r['noise_level']['value'])}**")
    weights = {m["run_id"]: (f"recommended (weight {m['weight']:.2f})" if len(rec.get("members", [])) > 1
                             else "recommended") for m in rec.get("members", [])}
    tab = pd.DataFrame([{"model": x["model"], "log g [dex]": x["value"], "± [dex]": x["uncertainty"],
                         "validation RMSE at this S/N [dex]": x.get("val_rmse_at_snr"),
                         "test RMSE at this S/N [dex]": x.get("test_rmse_at_snr"), "test RMSE [dex]": x["test_rmse"],
                         "test R²": x["test_r2"], "uncertainty kind": x["uncertainty_kind"], "inputs": x["inputs"],
                         "": weights.get(x["run_id"], "research: never recommended" if x.get("role") == "research"
                                         else "")} for x in r["logg"]])
    st.dataframe(tab, hide_index=True, width="stretch", column_config={
        "log g [dex]": st.column_config.NumberColumn(format="%.2f"), "± [dex]": st.column_config.NumberColumn(format="%.2f"),
        "validation RMSE at this S/N [dex]": st.column_config.NumberColumn(
            format="%.3f", help="what the recommendation is chosen and weighted on"),
        "test RMSE at this S/N [dex]": st.column_config.NumberColumn(format="%.3f"),
        "test RMSE [dex]": st.column_config.NumberColumn(format="%.3f"), "test R²": st.column_config.NumberColumn(format="%.3f")})
    notes = ["± is each model's own uncertainty for this spectrum: for Ridge and LightGBM the spread of its predictions "
             "over re-draws of the input noise (and of the fitted continuum level, when it was fitted); for the Cannon "
             "the formal 1σ of its χ² fit. None includes the model's systematic error, which the test RMSE measures; "
             "the recommended error bar is the larger of the two. The recommendation is the 1/RMSE²-weighted mean of "
             "the three report-suite predictors with the lowest test RMSE on test stars of this spectrum's S/N (one "
             "quartile of the test split), its floor that mean's own test RMSE there."]
    if r.get("research_hidden"):
        notes.append(f"{r['research_hidden']} research runs (ablation controls, sweep variants, latent probes, metadata "
                     f"baselines, the physics ceiling) do not answer for uploads: tick **research models** to list them.")
    notes += [f"Not used: {s['model']}: {s['why']}." for s in r["skipped"]]
    st.caption(" ".join(notes))
    if r["other_labels"]:
        st.markdown("**Teff and [M/H]**")
        st.dataframe(pd.DataFrame([{"label": {"teff": "Teff [K]", "mh": "[M/H] [dex]"}[x["target"]], "model": x["model"],
                                    "value": x["value"], "±": x["uncertainty"], "uncertainty kind": x["uncertainty_kind"],
                                    "note": x["note"]} for x in r["other_labels"]]), hide_index=True, width="stretch",
                     column_config={"value": st.column_config.NumberColumn(format="%.2f"),
                                    "±": st.column_config.NumberColumn(format="%.2f")})

    zooms = data_summary.zoom_windows(float(ds.wave[0]), float(ds.wave[-1]))
    zoom = st.radio("Zoom", list(zooms), index=len(zooms) - 1, horizontal=True, key="predict_zoom")
    st.altair_chart(spectrum_chart(r, zooms[zoom]), width="stretch")
    if r.get("physics_fit"):
        st.altair_chart(residual_chart(r, zooms[zoom]), width="stretch")
    st.caption(f"The upload resampled onto the models' wavelength grid (flux-conserving) and normalised "
               f"({r['normalisation']['how']}); band: ±1σ"
               + ("; shaded: pixels the upload does not cover, filled with the training spectra's reconstruction."
                  if r["coverage"]["missing_pixels"] else "."))
    if r.get("physics_fit"):
        pf = r["physics_fit"]
        st.caption(f"Red: the simulator's best fit (Teff {pf['teff']:.0f} ± {pf['sigma']['teff']:.0f} K, log g "
                   f"{pf['logg']:.2f} ± {pf['sigma']['logg']:.2f}, [M/H] {pf['mh']:+.2f} ± {pf['sigma']['mh']:.2f}; "
                   f"reduced χ² {pf['chi2']:.2f} with a {100 * pf['model_floor']:.0f} % model error, flagged above "
                   f"{pf['chi2_flag']:g}); above, its residuals in units of the error.")
        st.altair_chart(kiel_chart(r, ds), width="stretch")
    sal = saliency_chart(r, zooms[zoom])
    if sal is not None:
        st.altair_chart(sal, width="stretch")
        st.caption("How much each part of this spectrum moves the recommended model's log g, in 4-pixel bins: "
                   "Ridge splits its prediction exactly into coefficient × (flux − training mean) per pixel; "
                   "LightGBM by TreeSHAP; torch models by |gradient × input|; the Cannon shows the log g "
                   "information each pixel carries at its fitted labels.")
    with st.expander("How this answer was made", icon=":material/info:"):
        nl = r["noise_level"]
        st.markdown(
            f"- **Data set**: {r['dataset']} (fingerprint `{r['dataset_fingerprint']}`), grid "
            f"{r['coverage']['grid'][0]:.0f}-{r['coverage']['grid'][1]:.0f} Å; upload "
            f"{r['coverage']['upload_range_A'][0]:.1f}-{r['coverage']['upload_range_A'][1]:.1f} Å.\n"
            f"- **Coverage**: {r['coverage']['statement']}.\n"
            f"- **S/N**: {r['snr']['value']:.1f}, {r['snr']['how']}.\n"
            f"- **Noise level**: {P.nl_text(nl['value'])}, {nl['how']}; training S/N at that level "
            f"{nl['training_snr_range'][0]:.0f}-{nl['training_snr_range'][1]:.0f} (lowest to highest).\n"
            f"- **Normalisation**: flux divided by {r['normalisation']['scale']:.5g}: {r['normalisation']['how']}.\n"
            f"- **Out-of-distribution check**: PCA distance {ood['pca_distance']:.2f} "
            f"({ood['pca_distance_percentile']:.0f}th percentile of the validation spectra), reconstruction χ²/pixel "
            f"{ood['residual_chi2']:.2f} ({ood['residual_percentile']:.0f}th percentile).\n"
            f"- **Time**: {r['seconds']:.2f} s for every model.")
        st.download_button("Download this answer (JSON)", P.to_json(r), file_name="prediction.json",
                           mime="application/json", key="predict_json")


def show_batch(df: pd.DataFrame, summary: dict) -> None:
    st.subheader(summary["file"])
    st.caption(f"Read as {summary['format']}." + "".join(f" {n[0].upper()}{n[1:]}." for n in summary["notes"]))
    c = st.columns(4)
    c[0].metric("spectra", f"{summary['spectra']:,}")
    c[1].metric("spectra per second", f"{summary['spectra_per_s']:,.0f}")
    c[2].metric("flagged out of distribution", f"{summary['flagged']:,}")
    if "rmse_vs_true_logg" in summary:
        c[3].metric("RMSE vs the file's log g [dex]", f"{summary['rmse_vs_true_logg']:.3f}")
    else:
        c[3].metric("noise levels used", ", ".join(f"{k}: {v:,}" for k, v in summary["noise_levels"].items()))
    st.download_button("Download all predictions (CSV)", df.to_csv(index=False), file_name="predictions.csv",
                       mime="text/csv", type="primary", key="predict_csv")
    st.dataframe(df.head(500), hide_index=True, width="stretch")
    st.caption(("First 500 rows. " if len(df) > 500 else "") + f"`logg` is the recommended model's value per spectrum, "
               f"`logg_err` {summary['error_bar']}; one column per model the recommendation uses at some S/N, "
               f"filled on the spectra whose recommendation it enters ({summary.get('not_needed', 0)} other "
               f"predictors not run; the CLI's `--all-models` runs every one); "
               f"`ood` lists the out-of-distribution flags."
               + "".join(f" Not used: {s['model']}: {s['why']}." for s in summary["skipped"]))
    if "true_logg" in df and df["logg"].notna().any():
        chart = alt.Chart(df.head(5000), title="Recommended log g against the file's log g").mark_circle(
            size=14, opacity=0.6, color=BLUE).encode(
            x=alt.X("true_logg:Q", title="log g in the file [dex]", scale=alt.Scale(zero=False)),
            y=alt.Y("logg:Q", title="predicted log g [dex]", scale=alt.Scale(zero=False)),
            tooltip=["spectrum:Q", alt.Tooltip("true_logg:Q", format=".2f"), alt.Tooltip("logg:Q", format=".2f")])
        lo, hi = float(np.nanmin(df.true_logg)), float(np.nanmax(df.true_logg))
        line = alt.Chart(pd.DataFrame({"a": [lo, hi]})).mark_line(color=GREY, strokeDash=[4, 3]).encode(x="a:Q", y="a:Q")
        st.altair_chart(alt.layer(line, chart).properties(height=320), width="stretch")
        st.caption("Each point is one spectrum of the file (at most 5,000); dashed: predicted = true.")


def _on_upload():
    st.session_state["predict_source"] = "upload"


def _on_example():
    st.session_state["predict_source"] = "example"


ds = appstate.require_dataset()
st.title("Predict")
st.caption(f"Upload a spectrum and read its log g from every model trained on **{ds.name}** "
           f"({ds.wave[0]:.0f}-{ds.wave[-1]:.0f} Å), with an uncertainty per model, a recommended value and a "
           f"check that the spectrum resembles the training set. An HDF5 file of many spectra gives a table to download.")

entries = P.trained_models(ds)
usable = [e for e in entries if e.usable]
predictors = [e for e in usable if e.role == "predictor"]
if not predictors:
    st.info(f"No predictors for **{ds.name}** yet: an upload is answered by the report suite's methods. Train them on "
            f"the Training page, or run `python -m core train --suite report --dataset {ds.name}`.",
            icon=":material/model_training:")
    st.stop()
levels = sorted({e.noise_level for e in predictors})
runs = tuple(sorted(e.run_id for e in usable))

left, right = st.columns([3, 2], gap="large")
with left:
    up = st.file_uploader(
        "Spectrum file", type=P.UPLOAD_TYPES, key="predict_upload", on_change=_on_upload,
        help=f"Text (CSV, TSV or whitespace with a header naming wavelength, flux and error or ivar; comment lines "
             f"start with #), NumPy .npy/.npz, FITS (1-D image with CRVAL1/CDELT1, or a table with wavelength/loglam, "
             f"flux, error/ivar columns), or HDF5 in the project's schema (many spectra). Wavelengths in Å, or name "
             f"the unit in the header. At most {P.upload_limit_mb():g} MB.")
with right:
    test_n = int(ds.splits["test"].size)
    a, b, c = st.columns(3)
    k = a.number_input(f"Test star (0-{max(test_n - 1, 0)})", 0, max(test_n - 1, 0), 0, key="predict_example_star")
    ex_level = b.selectbox("its noise level", levels, index=0, key="predict_example_level", format_func=P.nl_text)
    shift = c.number_input("moved to [km/s]", -600, 600, 0, step=50, key="predict_example_rv",
                           help="Give the example star a radial velocity, to see it measured and removed.")
    st.button("Use an example", on_click=_on_example, key="predict_example_btn", icon=":material/science:",
              help="Loads that test spectrum of the active data set (as the models were scored on it) and shows its "
                   "true labels beside the prediction.", disabled=test_n == 0)
o1, o2, o3, o5, o4 = st.columns([1.5, 1.3, 1.5, 1.2, 1.7])
noise = o1.selectbox("Models of noise level", ["auto", *levels], format_func=_nl, key="predict_noise",
                     help="auto picks the trained noise level whose training spectra have the S/N nearest this "
                          "spectrum's; or pick one.")
normalise = o2.selectbox("Normalisation", list(P.NORMALISE), key="predict_normalise",
                         format_func=lambda m: {"auto": "auto", "fit": "fit the continuum level",
                                                "as-is": "as uploaded"}[m],
                         help=" · ".join(f"{k}: {v}" for k, v in P.NORMALISE.items()))
medium = o3.selectbox("Wavelengths", ["auto", "air", "vacuum"], key="predict_medium",
                      format_func=lambda m: {"auto": "auto (from the file)", "air": "air", "vacuum": "vacuum"}[m],
                      help="auto reads the file's header or column names (SDSS and LAMOST publish vacuum wavelengths); "
                           "vacuum is converted to the models' air grid by the IAU formula (Morton 2000).")
res_r = o5.number_input("Resolving power R", 0, 200_000, 0, step=500, key="predict_resolution",
                        help="The upload's R = λ / FWHM when its survey documents it (Gaia RVS 11,500; LAMOST ~1,800); "
                             "0: measured from its line widths. A sharper spectrum is degraded to the models' R; "
                             "matched models are simulated at it.")
resolution = float(res_r) if res_r else "auto"
research = o4.toggle("research models", key="predict_research",
                     help="Also list ablation controls, sweep variants, latent probes and the physics ceiling. They "
                          "are research results on the simulator, never recommended for an upload.")
physics = o4.toggle("physics fit", key="predict_physics",
                    help="Also fit the simulator to the spectrum (about 1 s): its labels with their errors, the fit "
                         "and its residuals under the spectrum, the star on the Kiel diagram, and a flag when the "
                         "simulator cannot fit it.")

source = st.session_state.get("predict_source")
if source == "upload" and up is None:
    source = None
if source is None and up is not None:
    source = "upload"
if source is None:
    st.info("Upload a spectrum, or press **Use an example** to see a prediction for a test spectrum.",
            icon=":material/upload_file:")
    st.stop()

ds_use, runs_use = ds, runs
if source == "upload":      # a spectrum the data set's models were not trained for: models matched to it
    with appstate.friendly_errors("The matched models"):
        use = matched_panel.offer(up.getvalue(), up.name, ds, medium, resolution)
        if use:
            ds_use = appstate.load_dataset(use)
            runs_use = tuple(sorted(e.run_id for e in P.trained_models(ds_use) if e.usable))

with appstate.friendly_errors("The prediction"):
    try:
        with st.spinner("Predicting with every model..."):
            if source == "example":
                # an example comes normalised from the data set: 'auto' keeps it exactly as the models saw it
                norm = "as-is" if normalise == "auto" else normalise
                kind, res = "single", _predict_example(int(k), float(ex_level), ds.name, ds.fingerprint, runs,
                                                       noise, norm, research, float(shift), physics=physics)
            else:
                data = up.getvalue()
                kind, res = _predict_bytes(data, up.name, ds_use.name, ds_use.fingerprint, runs_use, noise, normalise,
                                           research, medium, physics=physics, resolution=resolution)
    except P.PredictError as e:
        st.error(appstate.one_line(e), icon=":material/error:")
        st.stop()
    if kind == "batch":
        show_batch(*res)
    else:
        show_single(res, ds_use)
