"""Panel service: review of referrals, decisions with recommendations, safety planning, oversight of plans."""
