"""Metrics on host arrays: ROC AUC of the student against the teacher (heard / unheard identities),
the linear probe of Table 5, and the figures that show them."""
