"""The three labels of a star and the box the study samples them in (Teff in K, log g and [M/H] in dex)."""
LABELS = ("teff", "logg", "mh")
LABEL_TITLES = {"teff": "Teff [K]", "logg": "log g [dex]", "mh": "[M/H] [dex]"}
LABEL_BOX = {"teff": (3500.0, 7000.0), "logg": (1.0, 5.0), "mh": (-2.5, 0.5)}
