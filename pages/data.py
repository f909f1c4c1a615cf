"""The Data page: what is in the active data set, and how log g shows in a spectrum.

Thin: every number comes from pages/_ui/appstate.py helpers; this file only draws.
"""
import altair as alt
import numpy as np
import streamlit as st

from core.analysis import data_summary
from core.data import LABELS
from pages._ui import appstate

AX_WAVE = "wavelength [Å]"
BLUE, GREY, SKY, RED = "#1f5f99", "#8a94a3", "#c3cbd6", "#b8432f"


def label_histograms(ds) -> None:
    st.subheader("Labels")
    cols = st.columns(3)
    for col, (i, k) in zip(cols, enumerate(LABELS)):
        name, unit = data_summary.LABEL_NAMES[k], data_summary.LABEL_UNITS[k]
        h = data_summary.histogram_frame(ds.labels[:, i], bins=30)
        chart = alt.Chart(h, title=f"{name} distribution").mark_rect(color=BLUE, opacity=0.85, stroke="white",
                                                                      strokeWidth=0.5).encode(
            x=alt.X("lo:Q", title=f"{name} [{unit}]", scale=alt.Scale(zero=False, nice=False)),
            x2="hi:Q",
            y=alt.Y("count:Q", title="spectra per bin", scale=alt.Scale(zero=True)),
            y2=alt.datum(0),
            tooltip=[alt.Tooltip("lo:Q", title="from", format=".3g"), alt.Tooltip("hi:Q", title="to", format=".3g"),
                     alt.Tooltip("count:Q", title="spectra")],
        ).properties(height=260)
        col.altair_chart(chart, width="stretch")
        fmt = ".0f" if k == "teff" else ".2f"
        col.caption(f"{name}: {ds.labels[:, i].min():{fmt}} to {ds.labels[:, i].max():{fmt}} {unit}, "
                    f"{ds.n:,} spectra in 30 bins{'; flat by design (Latin hypercube)' if ds.attrs.get('source') == 'simulator' else ''}.")


def correlation_check(ds) -> None:
    st.subheader("Label independence")
    corr, worst, pair = data_summary.correlation_frame(ds.labels)
    left, right = st.columns([2, 3])
    order = [data_summary.LABEL_NAMES[k] for k in LABELS]
    base = alt.Chart(corr).encode(
        x=alt.X("a:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("b:N", sort=order, title=None),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("r:Q", scale=alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True),
                        legend=alt.Legend(title="Pearson r")),
        tooltip=["a:N", "b:N", alt.Tooltip("r:Q", format=".4f")],
    )
    text = base.mark_text(fontSize=15).encode(
        text=alt.Text("r:Q", format=".3f"),
        color=alt.condition("abs(datum.r) > 0.6", alt.value("white"), alt.value("black")),
    )
    left.altair_chart(alt.layer(heat, text, title="Pearson correlation between labels").properties(height=300), width="stretch")
    left.caption("Pearson r of Teff, log g and [M/H] over all spectra; off-diagonal values near 0 "
                 "mean a model cannot learn log g through Teff or [M/H].")
    with right:
        if worst < data_summary.INDEPENDENCE_LIMIT:
            st.success(f"all |r| < {data_summary.INDEPENDENCE_LIMIT}: labels independent "
                       f"(largest |r| = {worst:.3f}, {pair})", icon=":material/check_circle:")
        else:
            st.warning(f"labels are correlated: |r| = {worst:.3f} for {pair} (limit "
                       f"{data_summary.INDEPENDENCE_LIMIT}); a model may learn log g through the other labels",
                       icon=":material/warning:")
        st.markdown("The built-in grid samples Teff, log g and [M/H] on a Latin hypercube, so each label "
                    "carries no information about the others. An imported grid (isochrones, a survey) "
                    "usually fails this check: giants are cool, dwarfs are hot.")


def _wave_x(window):
    return alt.X("wave:Q", title=AX_WAVE, scale=alt.Scale(domain=list(window), nice=False))


def _sky_layer(sky, window, legend: bool):
    s = sky[(sky.end >= window[0]) & (sky.start <= window[1])].assign(what="OH sky lines")
    color = alt.Color("what:N", scale=alt.Scale(range=[SKY]),
                      legend=alt.Legend(title=None, orient="bottom") if legend else None)
    return alt.Chart(s).mark_rect(opacity=0.6, clip=True).encode(
        x=alt.X("start:Q", scale=alt.Scale(domain=list(window), nice=False)), x2="end:Q", color=color)


def spectrum_chart(df, sky, window, title: str, height: int = 300):
    """Noisy flux with its +-1 sigma band, OH sky lines shaded behind it."""
    df = df[(df.wave >= window[0]) & (df.wave <= window[1])]
    x = _wave_x(window)
    layers = [] if sky is None else [_sky_layer(sky, window, legend=True)]
    layers.append(alt.Chart(df).mark_area(color="#9ec3e6", opacity=0.7, clip=True).encode(
        x=x, y=alt.Y("lo:Q", title="normalised flux", scale=alt.Scale(zero=False)), y2="hi:Q"))
    layers.append(alt.Chart(df).mark_line(color=BLUE, strokeWidth=0.8, clip=True).encode(
        x=x, y="flux:Q", tooltip=[alt.Tooltip("wave:Q", format=".2f", title="λ [Å]"),
                                  alt.Tooltip("flux:Q", format=".3f"), alt.Tooltip("sigma:Q", format=".4f", title="1σ")]))
    return alt.layer(*layers, title=title).properties(height=height)


def error_chart(df, sky, window, title: str, height: int = 230):
    df = df[(df.wave >= window[0]) & (df.wave <= window[1])]
    layers = [] if sky is None else [_sky_layer(sky, window, legend=False)]
    layers.append(alt.Chart(df).mark_line(color=RED, strokeWidth=0.8, clip=True).encode(
        x=_wave_x(window), y=alt.Y("sigma:Q", title="1σ [norm. flux]", scale=alt.Scale(zero=True))))
    return alt.layer(*layers, title=title).properties(height=height)


def example_spectra(ds) -> None:
    st.subheader("Example spectra")
    test = ds.splits["test"]
    if test.size == 0:
        st.info("The test split is empty: no example spectra to show.")
        return
    c1, c2 = st.columns([1, 2])
    k = c1.number_input(f"Test star (0-{test.size - 1})", min_value=0, max_value=int(test.size - 1), value=0,
                        step=1, key="data_example_star")
    zooms = data_summary.zoom_windows(float(ds.wave[0]), float(ds.wave[-1]))
    zoom = c2.radio("Zoom", list(zooms), index=len(zooms) - 1, horizontal=True, key="data_example_zoom")
    window = zooms[zoom]
    row = int(test[int(k)])
    teff, logg, mh = ds.labels[row]
    st.markdown(f"Test star {int(k)} (row {row} of the data set): Teff **{teff:.0f} K**, log g **{logg:.2f} dex**, "
                f"[M/H] **{mh:+.2f} dex**")
    sky = data_summary.sky_intervals(ds)
    if sky is None:
        st.info(f"No sky shading: this data set (source: {ds.attrs.get('source', 'unknown')}) carries no "
                "sky-model metadata, so where the OH lines fall is unknown.", icon=":material/info:")
    cols = st.columns(2)
    for col, nl in zip(cols, (0.1, 1.0)):
        df = data_summary.example_spectrum(ds, row, nl)
        snr = float(np.median(df.clean / df.sigma))
        col.altair_chart(spectrum_chart(df, sky, window, f"Noise level {nl}: flux ± 1σ (median S/N {snr:.0f})"),
                         width="stretch")
        col.altair_chart(error_chart(df, sky, window, f"Noise level {nl}: 1σ error vector"), width="stretch")
        col.caption(f"The flux a model sees at noise level {nl} (blue, band = ±1σ) and its error vector "
                    f"(red){'; it rises at the OH sky lines (grey)' if sky is not None else ''}.")


def snr_distribution(ds) -> None:
    st.subheader("Signal-to-noise")
    snr = appstate.snr_table_cached(ds)
    h = data_summary.histogram_frame(snr.snr.to_numpy(), bins=30, log=True)
    med = float(np.median(snr.snr))
    bars = alt.Chart(h).mark_rect(
            color=BLUE, opacity=0.85, stroke="white", strokeWidth=0.5).encode(
        x=alt.X("lo:Q", title="median S/N per pixel (log scale)",
                scale=alt.Scale(type="log", domain=[float(h.lo.min()), float(h.hi.max())], nice=False)),
        x2="hi:Q", y=alt.Y("count:Q", title="spectra per bin", scale=alt.Scale(zero=True)), y2=alt.datum(0),
        tooltip=[alt.Tooltip("lo:Q", format=".1f", title="S/N from"), alt.Tooltip("hi:Q", format=".1f", title="to"),
                 "count:Q"])
    rule = alt.Chart({"values": [{"m": med}]}).mark_rule(color=RED, strokeDash=[4, 3]).encode(x="m:Q")
    left, right = st.columns([3, 2])
    left.altair_chart(alt.layer(bars, rule, title="S/N per spectrum at noise level 1.0").properties(height=300), width="stretch")
    sampled = "" if len(snr) == ds.n else f" ({len(snr):,} of {ds.n:,} spectra, evenly spaced)"
    left.caption(f"Median over pixels of flux / 1σ error for each spectrum at noise level 1.0{sampled}; "
                 f"dashed line: the median, {med:.1f}.")
    with right:
        a, b = st.columns(2)
        a.metric("median S/N, noise 1.0", f"{med:.1f}")
        b.metric("median S/N, noise 0.1", f"{10 * med:.0f}")
        st.markdown(f"S/N ranges from {snr.snr.min():.1f} to {snr.snr.max():.1f} per pixel at noise level 1.0. "
                    "Noise level 0.1 multiplies the error vector by 0.1, so every S/N is **10× higher**.")


@st.fragment
def live_simulator() -> None:
    with appstate.friendly_errors("The live simulator"):
        st.subheader("log g and the line wings (live simulator)")
        c = st.columns(4)
        teff = c[0].slider("Teff [K]", 3500, 7000, 4800, step=50, key="live_teff")
        logg = c[1].slider("log g [dex]", 1.0, 5.0, 1.5, step=0.05, key="live_logg")
        mh = c[2].slider("[M/H] [dex]", -2.5, 0.5, 0.0, step=0.05, key="live_mh")
        ref = c[3].slider("reference log g [dex]", 1.0, 5.0, 4.5, step=0.05, key="live_ref")
        zoom = st.radio("Zoom", list(data_summary.ZOOMS), index=0, horizontal=True, key="live_zoom")
        window = data_summary.ZOOMS[zoom]
        df = data_summary.logg_comparison(teff, logg, mh, ref, window, sim=appstate.simulator())
        cur, refname = df.curve.unique()[0], df.curve.unique()[1]
        x = _wave_x(window)
        lines = alt.Chart(df).mark_line(clip=True).encode(
            x=x, y=alt.Y("flux:Q", title="normalised flux", scale=alt.Scale(zero=False)),
            color=alt.Color("curve:N", scale=alt.Scale(domain=[cur, refname], range=[BLUE, GREY]),
                            legend=alt.Legend(title=None, orient="bottom-left")),
            strokeDash=alt.StrokeDash("curve:N", scale=alt.Scale(domain=[cur, refname], range=[[1, 0], [5, 3]])),
            tooltip=[alt.Tooltip("wave:Q", format=".2f", title="λ [Å]"), alt.Tooltip("flux:Q", format=".3f"),
                     "curve:N"])
        ids = data_summary.strong_lines(window)
        marks = alt.Chart(ids).mark_rule(color="#c0c6cf", strokeDash=[2, 3], clip=True).encode(
            x=alt.X("wave:Q", scale=alt.Scale(domain=list(window), nice=False)), tooltip=["name:N"])
        named = ids[~ids.name.str.startswith("Pa")]
        near_right = named.wave > window[0] + 0.9 * (window[1] - window[0])  # label those to the left of the line
        labels = [alt.Chart(part).mark_text(align=align, dx=dx, fontSize=11, color="#5a6372", baseline="top",
                                            clip=True).encode(
            x=alt.X("wave:Q", scale=alt.Scale(domain=list(window), nice=False)), y=alt.value(4), text="name:N")
            for part, align, dx in ((named[~near_right], "left", 3), (named[near_right], "right", -3))]
        title = f"Simulated spectrum, Teff {teff} K, [M/H] {mh:+.2f} dex: log g {logg:.2f} vs {ref:.2f} dex"
        st.altair_chart(alt.layer(marks, lines, *labels, title=title).properties(height=380), width="stretch")
        d = df[df.curve == cur]
        diff = alt.Chart(d).mark_area(color=BLUE, opacity=0.5, clip=True).encode(
            x=x, y=alt.Y("diff:Q", title="Δ flux"))
        st.altair_chart(alt.layer(marks, diff, title=f"Difference: flux(log g {logg:.2f}) − flux(log g {ref:.2f})")
                        .properties(height=200), width="stretch")
        st.caption("Noise-free spectra from the built-in simulator (dotted: line identifications, "
                   "unlabelled ones are Paschen lines). Move log g: the Ca II triplet deepens and its wings "
                   "widen toward giants (low log g), while the pressure-broadened Na I doublet is strongest in "
                   "cool dwarfs (high log g); the lower panel shows where the flux moves.")


def nuisances(ds) -> None:
    """What a telescope adds (#18): the data set's nuisance draws, and a test star with and without tellurics."""
    st.subheader("Nuisances: what the telescope and the sky add")
    frames = data_summary.nuisance_frames(ds)
    if frames:
        rec = (ds.nuisance_recipe or {}).get("name", "custom")
        cols = st.columns(min(3, len(frames)))
        for i, (title, unit, h) in enumerate(frames):
            chart = alt.Chart(h, title=title).mark_rect(color=BLUE, opacity=0.85, stroke="white", strokeWidth=0.5).encode(
                x=alt.X("lo:Q", title=f"{title} [{unit}]" if unit else title, scale=alt.Scale(zero=False, nice=False)),
                x2="hi:Q", y=alt.Y("count:Q", title="spectra per bin"), y2=alt.datum(0),
                tooltip=[alt.Tooltip("lo:Q", format=".3g", title="from"), alt.Tooltip("hi:Q", format=".3g", title="to"),
                         "count:Q"]).properties(height=200)
            cols[i % len(cols)].altair_chart(chart, width="stretch")
        st.caption(f"Drawn per star from the `{rec}` recipe's priors and stored as labels (docs/simulator.md, "
                   f"\"Nuisances\"); each spectrum here is the observed one.")
    else:
        st.caption(f"{ds.name} was built without nuisances: every star is at rest, at R = 5000, with a perfect "
                   "continuum and no tellurics. `python -m core data build --nuisance survey` builds its survey twin.")
    if ds.attrs.get("source") != "simulator":
        return
    c1, c2, c3 = st.columns([3, 1, 1])
    win = c1.radio("Band", list(data_summary.TELLURIC_WINDOWS), horizontal=True, key="data_tell_band")
    pwv = c2.slider("PWV [mm]", 0.5, 10.0, 2.0, step=0.5, key="data_tell_pwv")
    am = c3.slider("airmass", 1.0, 2.0, 1.2, step=0.1, key="data_tell_am")
    test = ds.splits["test"]
    row = int(test[int(st.session_state.get("data_example_star", 0))]) if test.size else 0
    window = data_summary.TELLURIC_WINDOWS[win]
    df = data_summary.telluric_comparison(ds.labels[row], pwv, am, window, sim=appstate.simulator())
    names = list(df.curve.unique())
    chart = alt.Chart(df).mark_line(strokeWidth=0.9, clip=True).encode(
        x=_wave_x(window), y=alt.Y("flux:Q", title="normalised flux", scale=alt.Scale(zero=False)),
        color=alt.Color("curve:N", scale=alt.Scale(domain=names, range=[GREY, RED]),
                        legend=alt.Legend(title=None, orient="top", labelLimit=400)),
        tooltip=[alt.Tooltip("wave:Q", format=".2f", title="λ [Å]"), alt.Tooltip("flux:Q", format=".3f"), "curve:N"])
    st.altair_chart(chart.properties(height=360, title=f"The example test star with and without telluric absorption: "
                                                       f"{win}"), width="stretch")
    st.caption("Noise-free; telluric transmission at rest multiplies the star before the line-spread function "
               "(band shapes set by eye, not fitted to a measured telluric spectrum: docs/simulator.md). The H2O "
               "bands sit on the Na I doublet and the O2 A band next to K I, two gravity-sensitive features.")


def dataset_table(ds) -> None:
    st.subheader("Data set")
    st.table(data_summary.info_frame(ds).set_index("field"), border="horizontal", hide_header=True)
    st.caption("Provenance of the active data set: the fingerprint is a hash of every wavelength, label, "
               "split index, flux and error value, and is stored with every run trained on it.")

ds = appstate.require_dataset()
st.title("Data")
st.caption(f"Data set **{ds.name}**: {ds.n:,} spectra × {ds.n_pix:,} pixels, "
           f"{ds.wave[0]:.0f}-{ds.wave[-1]:.0f} Å, source {ds.attrs.get('source', 'unknown')}.")
with appstate.friendly_errors("The simulator version check"):
    if stale := data_summary.stale_simulator(ds):
        st.warning(stale, icon=":material/update:")
for section in (label_histograms, correlation_check, example_spectra, snr_distribution, nuisances):
    with appstate.friendly_errors(f"The {section.__name__.replace('_', ' ')} section"):
        section(ds)
live_simulator()
with appstate.friendly_errors("The data set table"):
    dataset_table(ds)
