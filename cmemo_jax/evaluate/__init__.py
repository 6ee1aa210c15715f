"""Evaluation: ROC AUC against the teacher (heard / unheard identities), linear probes (later)."""
