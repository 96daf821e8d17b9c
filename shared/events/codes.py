"""Published code lists agencies use in referrals and consent: the schema refuses any other value."""

from enum import StrEnum


class ReasonCode(StrEnum):
    """Why a child is referred to the Children's Team."""

    FAMILY_VIOLENCE = "family_violence"
    PARENTAL_MENTAL_HEALTH = "parental_mental_health"
    PARENTAL_SUBSTANCE_USE = "parental_substance_use"
    NEGLECT = "neglect"
    SCHOOL_ATTENDANCE = "school_attendance"
    BEHAVIOUR = "behaviour"
    CHILD_MENTAL_HEALTH = "child_mental_health"
    CHILD_HEALTH = "child_health"
    DEVELOPMENTAL_NEEDS = "developmental_needs"
    YOUTH_OFFENDING = "youth_offending"
    HOUSING_INSTABILITY = "housing_instability"
    FINANCIAL_HARDSHIP = "financial_hardship"
    PARENTING_SUPPORT = "parenting_support"
    CAREGIVER_CAPACITY = "caregiver_capacity"
    SOCIAL_ISOLATION = "social_isolation"
    BULLYING = "bullying"
    OTHER = "other"


class NeedDomain(StrEnum):
    """Areas of need a lead professional and the Child's Action Network may have to address."""

    HEALTH = "health"
    MENTAL_HEALTH = "mental_health"
    EDUCATION = "education"
    BEHAVIOUR = "behaviour"
    FAMILY_VIOLENCE = "family_violence"
    PARENTING_CAPACITY = "parenting_capacity"
    ECONOMIC = "economic"
    HOUSING = "housing"
    DISABILITY = "disability"
    SUBSTANCE_USE = "substance_use"
    CULTURAL_CONNECTION = "cultural_connection"
    YOUTH_JUSTICE = "youth_justice"


class Participation(StrEnum):
    """The family's agreement to take part."""

    YES = "yes"
    NO = "no"
    NOT_YET_ASKED = "not_yet_asked"


class SharingPurpose(StrEnum):
    """What shared information may be used for."""

    ASSESSMENT = "assessment"
    PLANNING = "planning"
    SERVICE_DELIVERY = "service_delivery"
    SAFETY = "safety"
    REVIEW = "review"


class ConcernCategory(StrEnum):
    PHYSICAL_HARM = "physical_harm"
    SEXUAL_HARM = "sexual_harm"
    EMOTIONAL_HARM = "emotional_harm"
    NEGLECT = "neglect"
    FAMILY_VIOLENCE = "family_violence"
    SELF_HARM = "self_harm"
    OTHER = "other"


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    NON_BINARY = "non_binary"
    OTHER = "other"
    NOT_STATED = "not_stated"


class Recommendation(StrEnum):
    """What the panel recommends: to a referrer, where to go instead; to a lead professional, what to put in place."""

    UNIVERSAL_SERVICES = "universal_services"
    GP_ENROLMENT = "gp_enrolment"
    SCHOOL_ENGAGEMENT = "school_engagement"
    EARLY_CHILDHOOD_EDUCATION = "early_childhood_education"
    PARENTING_PROGRAMME = "parenting_programme"
    FAMILY_VIOLENCE_SERVICE = "family_violence_service"
    CHILD_MENTAL_HEALTH_SERVICE = "child_mental_health_service"
    ADULT_MENTAL_HEALTH_SERVICE = "adult_mental_health_service"
    ALCOHOL_AND_DRUG_SERVICE = "alcohol_and_drug_service"
    HOUSING_SUPPORT = "housing_support"
    INCOME_SUPPORT = "income_support"
    KAUPAPA_MAORI_SERVICE = "kaupapa_maori_service"
    SPECIALIST_ASSESSMENT = "specialist_assessment"
    STATUTORY_REFERRAL = "statutory_referral"
    OTHER_AGENCY = "other_agency"
