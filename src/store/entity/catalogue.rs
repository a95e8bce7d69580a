//! sea-orm entities of the catalogue: courses, versions, modules, activities.
