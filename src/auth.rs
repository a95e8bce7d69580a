//! Who is calling and what they may do: tokens, principals, the per-method policy and the tower
//! layer that applies it, and the object scopes handlers check ([`scope`]).

pub mod layer;
pub mod policy;
pub mod scope;
pub mod token;

use std::fmt;

use crate::domain::organization::path_is_within;
use crate::error::{Error, Reason, Result};

/// A role a token may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, everywhere.
    Admin,
    /// Manages organisations and people in one subtree.
    OrgAdmin,
    /// Runs programmes and cohorts.
    ProgrammeManager,
    /// Delivers sessions.
    Trainer,
    /// Assesses candidates and applications.
    Assessor,
    /// Takes courses; sees only their own records.
    Learner,
    /// An HR system calling service-to-service.
    HrService,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 7] = [
        Self::Admin,
        Self::OrgAdmin,
        Self::ProgrammeManager,
        Self::Trainer,
        Self::Assessor,
        Self::Learner,
        Self::HrService,
    ];

    /// Returns the role's name in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::OrgAdmin => "org_admin",
            Self::ProgrammeManager => "programme_manager",
            Self::Trainer => "trainer",
            Self::Assessor => "assessor",
            Self::Learner => "learner",
            Self::HrService => "hr_service",
        }
    }

    /// Parses a role name from a token.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token subject: a person id, or a service name.
    pub subject: String,
    /// Granted roles.
    pub roles: Vec<Role>,
    /// For `org_admin`: the organisation whose subtree they manage.
    pub organization_id: Option<String>,
}

/// Where in the organisation tree a caller may act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole tree.
    All,
    /// The subtree rooted at this organisation (itself included).
    Subtree(String),
    /// Nowhere.
    Nothing,
}

impl Scope {
    /// Returns true when a node with materialised `path` is inside the scope.
    pub fn allows_path(&self, path: &str) -> bool {
        match self {
            Self::All => true,
            Self::Subtree(root) => path_is_within(path, root),
            Self::Nothing => false,
        }
    }

    /// Fails with PERMISSION_DENIED unless a node with `path` is inside the scope.
    pub fn require_path(&self, path: &str, what: &str) -> Result<()> {
        if self.allows_path(path) {
            Ok(())
        } else {
            Err(outside_organization_scope(what))
        }
    }
}

/// Returns the refusal of `what`, outside the organisations the caller manages (or missing, for
/// a caller who may not learn whether it exists).
pub fn outside_organization_scope(what: &str) -> Error {
    Error::permission_denied(
        Reason::OutsideOrganizationScope,
        format!("{what} is outside the organisations you manage"),
    )
}

impl Principal {
    /// Returns true when the principal holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Returns where in the tree the principal may manage organisations and people
    /// ([`scope::Object::PersonWrite`] in [`scope::SCOPES`]).
    pub fn management_scope(&self) -> Scope {
        scope::Caller::new(self.clone()).tree_scope(scope::Object::PersonWrite)
    }

    /// Returns where in the tree the principal may read people ([`scope::Object::PersonRead`]).
    pub fn read_scope(&self) -> Scope {
        scope::Caller::new(self.clone()).tree_scope(scope::Object::PersonRead)
    }
}

/// The caller and the method of one call; put in request extensions by [`layer::AuthLayer`].
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller.
    pub principal: Principal,
    /// Full RPC name, e.g. `lms.v1.OrganizationService/CreateOrganization`.
    pub method: String,
}

impl CallContext {
    /// Returns the audit context of a mutation made in this call.
    pub fn audit(&self, request_id: Option<String>) -> crate::domain::audit::AuditContext {
        crate::domain::audit::AuditContext {
            actor: self.principal.subject.clone(),
            action: self.method.clone(),
            request_id,
        }
    }
}

/// Returns the call context of a request, which the auth layer always sets on `lms.v1` calls.
pub fn context<T>(request: &tonic::Request<T>) -> Result<CallContext> {
    request
        .extensions()
        .get::<CallContext>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("no credentials".to_owned()))
}
