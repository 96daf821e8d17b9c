"""Referral service: agency intake, validation with feedback, consent, child identity and siblings."""
