//! sea-orm entities of programmes: programmes, phases, cohorts, enrolments.
