"""The physics layer: the built-in spectrum simulator, its line lists, the label box, and the Fisher
information / likelihood ceiling computed from it. Imports nothing else of the project but config."""
