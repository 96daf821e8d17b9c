from services.referral.app import Settings
from shared.serve import serve

serve("services.referral.app:create_app", Settings())
