//! `lms.v1.OrganizationService`.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use crate::auth;
use crate::domain::{
    field_mask,
    organization::{
        NewOrganization, Organization, OrganizationField, OrganizationKind, OrganizationPatch,
        parse_external_code,
    },
    page::Page,
    person::parse_lookup_keys,
};
use crate::error::Error;
use crate::pb;
use crate::store::{Store, organization::OrganizationFilter};

/// Handlers of `OrganizationService`.
#[derive(Clone)]
pub struct OrganizationApi {
    store: Store,
}

impl OrganizationApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn kind_from_proto(kind: i32) -> Option<OrganizationKind> {
    use pb::OrganizationKind as Kind;
    match Kind::try_from(kind).ok()? {
        Kind::Unspecified => None,
        Kind::Ministry => Some(OrganizationKind::Ministry),
        Kind::Agency => Some(OrganizationKind::Agency),
        Kind::Department => Some(OrganizationKind::Department),
        Kind::Unit => Some(OrganizationKind::Unit),
        Kind::TrainingCentre => Some(OrganizationKind::TrainingCentre),
        Kind::University => Some(OrganizationKind::University),
        Kind::Company => Some(OrganizationKind::Company),
        Kind::Partner => Some(OrganizationKind::Partner),
    }
}

fn kind_to_proto(kind: OrganizationKind) -> pb::OrganizationKind {
    use pb::OrganizationKind as Kind;
    match kind {
        OrganizationKind::Ministry => Kind::Ministry,
        OrganizationKind::Agency => Kind::Agency,
        OrganizationKind::Department => Kind::Department,
        OrganizationKind::Unit => Kind::Unit,
        OrganizationKind::TrainingCentre => Kind::TrainingCentre,
        OrganizationKind::University => Kind::University,
        OrganizationKind::Company => Kind::Company,
        OrganizationKind::Partner => Kind::Partner,
    }
}

impl From<Organization> for pb::Organization {
    fn from(organization: Organization) -> Self {
        Self {
            ancestor_ids: organization.ancestor_ids(),
            id: organization.id,
            name: organization.name,
            kind: kind_to_proto(organization.kind).into(),
            parent_id: organization.parent_id.unwrap_or_default(),
            external_code: organization.external_code.unwrap_or_default(),
            etag: crate::domain::etag(organization.revision),
            create_time: Some(super::timestamp(organization.create_time)),
            update_time: Some(super::timestamp(organization.update_time)),
        }
    }
}

#[tonic::async_trait]
impl pb::organization_service_server::OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let organization = message
            .organization
            .ok_or_else(|| Error::invalid("organization", "is required"))?;
        let new = NewOrganization::parse(
            "organization",
            &organization.name,
            kind_from_proto(organization.kind),
            &organization.parent_id,
            &organization.external_code,
        )?;
        let created = self
            .store
            .create_organization(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                context.principal.management_scope(),
                new,
                key,
            )
            .await?;
        tracing::info!(organization = %created.id, "organization created");
        Ok(Response::new(created.into()))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let id = crate::domain::organization::required_id("id", &request.get_ref().id)?;
        Ok(Response::new(
            self.store.get_organization(&id).await?.into(),
        ))
    }

    async fn lookup_organization(
        &self,
        request: Request<pb::LookupOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let code = parse_external_code("external_code", &request.get_ref().external_code)?;
        let found = self
            .store
            .organizations_by_external_code(std::slice::from_ref(&code))
            .await?;
        let organization = found
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("organization", code))?;
        Ok(Response::new(organization.into()))
    }

    async fn batch_lookup_organizations(
        &self,
        request: Request<pb::BatchLookupOrganizationsRequest>,
    ) -> Result<Response<pb::BatchLookupOrganizationsResponse>, Status> {
        let codes = parse_lookup_keys(
            "external_codes",
            &request.get_ref().external_codes,
            parse_external_code,
        )?;
        let mut by_code: HashMap<String, Organization> = self
            .store
            .organizations_by_external_code(&codes)
            .await?
            .into_iter()
            .filter_map(|organization| {
                let code = organization.external_code.clone()?;
                Some((code, organization))
            })
            .collect();
        let mut response = pb::BatchLookupOrganizationsResponse::default();
        for code in codes {
            match by_code.remove(&code) {
                Some(organization) => response.organizations.push(organization.into()),
                None => response.missing_external_codes.push(code),
            }
        }
        Ok(Response::new(response))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let message = request.into_inner();
        let kind = match message.kind {
            0 => None,
            kind => Some(
                kind_from_proto(kind)
                    .ok_or_else(|| Error::invalid("kind", "is not a known kind"))?,
            ),
        };
        let parent_id =
            crate::domain::organization::optional_id_or_error("parent_id", &message.parent_id)?;
        let subtree_of =
            crate::domain::organization::optional_id_or_error("subtree_of", &message.subtree_of)?;
        if message.roots_only && parent_id.is_some() {
            return Err(Error::invalid("roots_only", "cannot be combined with parent_id").into());
        }
        let path_prefix = match &subtree_of {
            Some(root) => Some(self.store.get_organization(root).await?.path),
            None => None,
        };
        let filters = format!(
            "parent={};kind={};subtree={};roots={}",
            message.parent_id, message.kind, message.subtree_of, message.roots_only
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let filter = OrganizationFilter {
            parent_id,
            roots_only: message.roots_only,
            kind,
            path_prefix,
        };
        let (organizations, next_page_token) =
            self.store.list_organizations(&filter, &page).await?;
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: organizations.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let organization = message
            .organization
            .ok_or_else(|| Error::invalid("organization", "is required"))?;
        let id = crate::domain::organization::required_id("organization.id", &organization.id)?;
        let paths = super::mask_paths(message.update_mask);
        if paths.iter().any(|path| path == "parent_id") {
            return Err(Error::invalid(
                "update_mask",
                "parent_id changes only through MoveOrganization",
            )
            .into());
        }
        let kind = kind_from_proto(organization.kind);
        let fields = field_mask::resolve(
            &paths,
            OrganizationField::parse,
            &OrganizationField::OUTPUT_ONLY,
            &OrganizationField::ALL,
            |field| match field {
                OrganizationField::Name => !organization.name.is_empty(),
                OrganizationField::Kind => kind.is_some(),
                OrganizationField::ExternalCode => !organization.external_code.is_empty(),
            },
        )?;
        let patch = OrganizationPatch::parse(
            "organization",
            &fields,
            &organization.name,
            kind,
            &organization.external_code,
        )?;
        let expected_revision = super::expected_revision("organization.etag", &organization.etag)?;
        let updated = self
            .store
            .update_organization(
                context.audit(None),
                context.principal.management_scope(),
                id,
                patch,
                expected_revision,
            )
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn move_organization(
        &self,
        request: Request<pb::MoveOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = crate::domain::organization::required_id("id", &message.id)?;
        let new_parent_id = crate::domain::organization::optional_id_or_error(
            "new_parent_id",
            &message.new_parent_id,
        )?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let moved = self
            .store
            .move_organization(
                context.audit(None),
                context.principal.management_scope(),
                id,
                new_parent_id,
                expected_revision,
            )
            .await?;
        tracing::info!(organization = %moved.id, "organization moved");
        Ok(Response::new(moved.into()))
    }
}
