"""HoloViews/Panel components shared by apps and notebooks (the only place Panel is imported)."""
