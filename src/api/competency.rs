//! `lms.v1.CompetencyService`: the competency framework (competencies, roles), the tags of
//! courses, activities and tracks, profiles and the holder search.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use crate::auth::{
    self,
    scope::{self, AsOwner as _, Object, Owner},
};
use crate::domain::{
    competency::{
        CompetencyArea, CompetencyField, CompetencyPatch, Evidence, EvidenceKind, Held, Level,
        MAX_REQUIREMENTS, MAX_TAGS, NewCompetency, NewRole, Requirement, Role, RoleField,
        RolePatch, Tag, TargetKind, TargetTag, check_code, check_description, check_levels,
        check_name, check_pairs, fold_profile, gaps,
    },
    field_mask,
    organization::{optional_id_or_error, required_id},
    page::Page,
};
use crate::error::{Error, Reason, Result, Violations};
use crate::pb;
use crate::store::{Store, competency::HolderFilter};

/// Handlers of `CompetencyService`.
#[derive(Clone)]
pub struct CompetencyApi {
    store: Store,
}

impl CompetencyApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn area_from_proto(area: i32) -> Option<CompetencyArea> {
    match pb::CompetencyArea::try_from(area).ok()? {
        pb::CompetencyArea::Unspecified => None,
        pb::CompetencyArea::Behavioural => Some(CompetencyArea::Behavioural),
        pb::CompetencyArea::Functional => Some(CompetencyArea::Functional),
        pb::CompetencyArea::Domain => Some(CompetencyArea::Domain),
    }
}

fn area_to_proto(area: Option<CompetencyArea>) -> pb::CompetencyArea {
    match area {
        None => pb::CompetencyArea::Unspecified,
        Some(CompetencyArea::Behavioural) => pb::CompetencyArea::Behavioural,
        Some(CompetencyArea::Functional) => pb::CompetencyArea::Functional,
        Some(CompetencyArea::Domain) => pb::CompetencyArea::Domain,
    }
}

/// Validates an area: unknown numbers are INVALID_ARGUMENT on `field`.
fn parse_area(field: &str, area: i32) -> Result<Option<CompetencyArea>> {
    if area != 0 && area_from_proto(area).is_none() {
        return Err(Error::invalid(field, "is not a known area"));
    }
    Ok(area_from_proto(area))
}

fn kind_to_proto(kind: TargetKind) -> pb::CompetencyTargetKind {
    match kind {
        TargetKind::Course => pb::CompetencyTargetKind::Course,
        TargetKind::Activity => pb::CompetencyTargetKind::Activity,
        TargetKind::CertificationTrack => pb::CompetencyTargetKind::CertificationTrack,
    }
}

/// Validates a target: a known kind and a UUID.
fn parse_target(target: Option<&pb::CompetencyTarget>) -> Result<(TargetKind, String)> {
    let Some(target) = target else {
        return Err(Error::invalid("target", "is required"));
    };
    let mut violations = Violations::new();
    let kind = match pb::CompetencyTargetKind::try_from(target.kind) {
        Ok(pb::CompetencyTargetKind::Course) => Some(TargetKind::Course),
        Ok(pb::CompetencyTargetKind::Activity) => Some(TargetKind::Activity),
        Ok(pb::CompetencyTargetKind::CertificationTrack) => Some(TargetKind::CertificationTrack),
        _ => {
            violations.add(
                "target.kind",
                "must be COURSE, ACTIVITY or CERTIFICATION_TRACK",
            );
            None
        }
    };
    if target.id.is_empty() {
        violations.add("target.id", "is required");
    } else if !crate::domain::is_uuid(&target.id) {
        violations.add("target.id", "must be a UUID");
    }
    let parsed = violations.into_result(kind)?;
    Ok((
        parsed.ok_or_else(|| Error::internal("kind checked above"))?,
        target.id.clone(),
    ))
}

fn levels_from_proto(levels: &[pb::CompetencyLevel]) -> Vec<Level> {
    levels
        .iter()
        .map(|level| Level {
            name: level.name.trim().to_owned(),
            description: level.description.clone(),
        })
        .collect()
}

fn competency_to_proto(competency: crate::domain::competency::Competency) -> pb::Competency {
    pb::Competency {
        max_level: competency.max_level(),
        levels: competency
            .levels
            .into_iter()
            .enumerate()
            .map(|(index, level)| pb::CompetencyLevel {
                level: index as i32 + 1,
                name: level.name,
                description: level.description,
            })
            .collect(),
        id: competency.id,
        code: competency.code,
        name: competency.name,
        description: competency.description,
        area: area_to_proto(competency.area).into(),
        etag: crate::domain::etag(competency.revision),
        create_time: Some(super::timestamp(competency.create_time)),
        update_time: Some(super::timestamp(competency.update_time)),
    }
}

fn builder_to_proto(tag: &TargetTag) -> pb::CompetencyTarget {
    pb::CompetencyTarget {
        kind: kind_to_proto(tag.kind).into(),
        id: tag.target_id.clone(),
        level: tag.level,
    }
}

fn role_to_proto(role: Role, builders: &HashMap<String, Vec<TargetTag>>) -> pb::Role {
    pb::Role {
        requirements: role
            .requirements
            .iter()
            .map(|requirement| pb::RoleRequirement {
                competency_id: requirement.competency_id.clone(),
                level: requirement.level,
                builders: builders
                    .get(&requirement.competency_id)
                    .map(|tags| {
                        tags.iter()
                            .filter(|tag| tag.level >= requirement.level)
                            .map(builder_to_proto)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        id: role.id,
        code: role.code,
        name: role.name,
        description: role.description,
        organization_id: role.organization_id.unwrap_or_default(),
        etag: crate::domain::etag(role.revision),
        create_time: Some(super::timestamp(role.create_time)),
        update_time: Some(super::timestamp(role.update_time)),
    }
}

fn tags_to_proto(kind: TargetKind, id: String, tags: Vec<Tag>) -> pb::CompetencyTags {
    pb::CompetencyTags {
        target: Some(pb::CompetencyTarget {
            kind: kind_to_proto(kind).into(),
            id,
            level: 0,
        }),
        tags: tags
            .into_iter()
            .map(|tag| pb::CompetencyTag {
                competency_id: tag.competency_id,
                level: tag.level,
            })
            .collect(),
    }
}

fn evidence_to_proto(evidence: Evidence) -> pb::CompetencyEvidence {
    let kind = match evidence.kind {
        EvidenceKind::CourseCompletion => pb::CompetencyEvidenceKind::CourseCompletion,
        EvidenceKind::ActivityCompletion => pb::CompetencyEvidenceKind::ActivityCompletion,
        EvidenceKind::Certificate => pb::CompetencyEvidenceKind::Certificate,
    };
    pb::CompetencyEvidence {
        kind: kind.into(),
        level: evidence.level,
        target_id: evidence.target_id,
        enrollment_id: evidence.enrollment_id.unwrap_or_default(),
        course_version_id: evidence.course_version_id.unwrap_or_default(),
        certificate_id: evidence.certificate_id.unwrap_or_default(),
        achieved_time: Some(super::timestamp(evidence.achieved_time)),
        expire_time: evidence.expire_time.map(super::timestamp),
    }
}

/// Validates requirements or tags sent as (competency id, level) pairs.
fn parse_pairs(
    violations: &mut Violations,
    field: &str,
    pairs: Vec<(String, i32)>,
    max: usize,
) -> Vec<(String, i32)> {
    check_pairs(violations, field, &pairs, max)
}

fn requirements_of(role: &pb::Role, violations: &mut Violations) -> Vec<Requirement> {
    let pairs = role
        .requirements
        .iter()
        .map(|requirement| (requirement.competency_id.clone(), requirement.level))
        .collect();
    parse_pairs(violations, "role.requirements", pairs, MAX_REQUIREMENTS)
        .into_iter()
        .map(|(competency_id, level)| Requirement {
            competency_id,
            level,
        })
        .collect()
}

#[tonic::async_trait]
impl pb::competency_service_server::CompetencyService for CompetencyApi {
    async fn create_competency(
        &self,
        request: Request<pb::CreateCompetencyRequest>,
    ) -> Result<Response<pb::Competency>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let competency = message
            .competency
            .ok_or_else(|| Error::invalid("competency", "is required"))?;
        let area = parse_area("competency.area", competency.area)?;
        let new = NewCompetency::parse(
            &competency.code,
            &competency.name,
            &competency.description,
            area,
            levels_from_proto(&competency.levels),
        )?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let created = self.store.create_competency(audit, new, key).await?;
        tracing::info!(competency = %created.id, code = %created.code, "competency created");
        Ok(Response::new(competency_to_proto(created)))
    }

    async fn get_competency(
        &self,
        request: Request<pb::GetCompetencyRequest>,
    ) -> Result<Response<pb::Competency>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        let competency = self.store.get_competency(&id).await?;
        Ok(Response::new(competency_to_proto(competency)))
    }

    async fn list_competencies(
        &self,
        request: Request<pb::ListCompetenciesRequest>,
    ) -> Result<Response<pb::ListCompetenciesResponse>, Status> {
        let message = request.into_inner();
        let area = parse_area("area", message.area)?;
        let filters = format!("area={}", message.area);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let (competencies, next_page_token) = self.store.list_competencies(area, &page).await?;
        Ok(Response::new(pb::ListCompetenciesResponse {
            competencies: competencies.into_iter().map(competency_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_competency(
        &self,
        request: Request<pb::UpdateCompetencyRequest>,
    ) -> Result<Response<pb::Competency>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let competency = message
            .competency
            .ok_or_else(|| Error::invalid("competency", "is required"))?;
        let id = required_id("competency.id", &competency.id)?;
        let expected = super::expected_revision("competency.etag", &competency.etag)?;
        let paths = super::mask_paths(message.update_mask);
        let fields = field_mask::resolve(
            &paths,
            CompetencyField::parse,
            &CompetencyField::OUTPUT_ONLY,
            &CompetencyField::ALL,
            |field| match field {
                CompetencyField::Name => !competency.name.is_empty(),
                CompetencyField::Description => !competency.description.is_empty(),
                CompetencyField::Area => competency.area != 0,
                CompetencyField::Levels => !competency.levels.is_empty(),
            },
        )?;
        let mut violations = Violations::new();
        let mut patch = CompetencyPatch::default();
        for field in fields {
            match field {
                CompetencyField::Name => {
                    check_name(&mut violations, "competency.name", &competency.name);
                    patch.name = Some(competency.name.trim().to_owned());
                }
                CompetencyField::Description => {
                    check_description(
                        &mut violations,
                        "competency.description",
                        &competency.description,
                    );
                    patch.description = Some(competency.description.clone());
                }
                CompetencyField::Area => {
                    if competency.area != 0 && area_from_proto(competency.area).is_none() {
                        violations.add("competency.area", "is not a known area");
                    }
                    patch.area = Some(area_from_proto(competency.area));
                }
                CompetencyField::Levels => {
                    let levels = levels_from_proto(&competency.levels);
                    check_levels(&mut violations, "competency.levels", &levels);
                    patch.levels = Some(levels);
                }
            }
        }
        let patch = violations.into_result(patch)?;
        let updated = self
            .store
            .update_competency(context.audit(None), id, patch, expected)
            .await?;
        tracing::info!(competency = %updated.id, revision = updated.revision, "competency updated");
        Ok(Response::new(competency_to_proto(updated)))
    }

    async fn create_role(
        &self,
        request: Request<pb::CreateRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let role = message
            .role
            .ok_or_else(|| Error::invalid("role", "is required"))?;
        let mut violations = Violations::new();
        check_code(&mut violations, "role.code", &role.code);
        check_name(&mut violations, "role.name", &role.name);
        check_description(&mut violations, "role.description", &role.description);
        let organization_id =
            match optional_id_or_error("role.organization_id", &role.organization_id) {
                Ok(id) => id,
                Err(_) => {
                    violations.add("role.organization_id", "must be a UUID");
                    None
                }
            };
        let requirements = requirements_of(&role, &mut violations);
        let new = violations.into_result(NewRole {
            code: role.code.clone(),
            name: role.name.trim().to_owned(),
            description: role.description.clone(),
            organization_id,
            requirements,
        })?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let created = self.store.create_role(audit, new, key).await?;
        tracing::info!(role = %created.id, code = %created.code, "competency role created");
        let builders = self.builders_of(&created).await?;
        Ok(Response::new(role_to_proto(created, &builders)))
    }

    async fn get_role(
        &self,
        request: Request<pb::GetRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        let role = self.store.get_role(&id).await?;
        let builders = self.builders_of(&role).await?;
        Ok(Response::new(role_to_proto(role, &builders)))
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let message = request.into_inner();
        let organization_id = optional_id_or_error("organization_id", &message.organization_id)?;
        let filters = format!("organization={}", message.organization_id);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let (roles, next_page_token) = self.store.list_roles(organization_id, &page).await?;
        let none = HashMap::new();
        Ok(Response::new(pb::ListRolesResponse {
            roles: roles
                .into_iter()
                .map(|role| role_to_proto(role, &none))
                .collect(),
            next_page_token,
        }))
    }

    async fn update_role(
        &self,
        request: Request<pb::UpdateRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let role = message
            .role
            .ok_or_else(|| Error::invalid("role", "is required"))?;
        let id = required_id("role.id", &role.id)?;
        let expected = super::expected_revision("role.etag", &role.etag)?;
        let paths = super::mask_paths(message.update_mask);
        let fields = field_mask::resolve(
            &paths,
            RoleField::parse,
            &RoleField::OUTPUT_ONLY,
            &RoleField::ALL,
            |field| match field {
                RoleField::Name => !role.name.is_empty(),
                RoleField::Description => !role.description.is_empty(),
                RoleField::OrganizationId => !role.organization_id.is_empty(),
                RoleField::Requirements => !role.requirements.is_empty(),
            },
        )?;
        let mut violations = Violations::new();
        let mut patch = RolePatch::default();
        for field in fields {
            match field {
                RoleField::Name => {
                    check_name(&mut violations, "role.name", &role.name);
                    patch.name = Some(role.name.trim().to_owned());
                }
                RoleField::Description => {
                    check_description(&mut violations, "role.description", &role.description);
                    patch.description = Some(role.description.clone());
                }
                RoleField::OrganizationId => {
                    match optional_id_or_error("role.organization_id", &role.organization_id) {
                        Ok(organization_id) => patch.organization_id = Some(organization_id),
                        Err(_) => violations.add("role.organization_id", "must be a UUID"),
                    }
                }
                RoleField::Requirements => {
                    patch.requirements = Some(requirements_of(&role, &mut violations));
                }
            }
        }
        let patch = violations.into_result(patch)?;
        let updated = self
            .store
            .update_role(context.audit(None), id, patch, expected)
            .await?;
        tracing::info!(role = %updated.id, revision = updated.revision, "competency role updated");
        let builders = self.builders_of(&updated).await?;
        Ok(Response::new(role_to_proto(updated, &builders)))
    }

    async fn set_competency_tags(
        &self,
        request: Request<pb::SetCompetencyTagsRequest>,
    ) -> Result<Response<pb::CompetencyTags>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let (kind, target_id) = parse_target(message.target.as_ref())?;
        let mut violations = Violations::new();
        let pairs = message
            .tags
            .iter()
            .map(|tag| (tag.competency_id.clone(), tag.level))
            .collect();
        let tags: Vec<Tag> = parse_pairs(&mut violations, "tags", pairs, MAX_TAGS)
            .into_iter()
            .map(|(competency_id, level)| Tag {
                competency_id,
                level,
            })
            .collect();
        let tags = violations.into_result(tags)?;
        let stored = self
            .store
            .set_competency_tags(context.audit(None), kind, target_id.clone(), tags)
            .await?;
        tracing::info!(target = %target_id, kind = kind.as_str(), tags = stored.len(), "competency tags set");
        Ok(Response::new(tags_to_proto(kind, target_id, stored)))
    }

    async fn get_competency_tags(
        &self,
        request: Request<pb::GetCompetencyTagsRequest>,
    ) -> Result<Response<pb::CompetencyTags>, Status> {
        let (kind, target_id) = parse_target(request.get_ref().target.as_ref())?;
        let tags = self.store.competency_tags(kind, &target_id).await?;
        Ok(Response::new(tags_to_proto(kind, target_id, tags)))
    }

    async fn get_competency_profile(
        &self,
        request: Request<pb::GetCompetencyProfileRequest>,
    ) -> Result<Response<pb::CompetencyProfile>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let person_id = required_id("person_id", &message.person_id)?;
        let role_id = optional_id_or_error("role_id", &message.role_id)?;
        let caller = scope::caller(&self.store, &context, Object::LearnerRecord).await?;
        let path = match self.store.person_organization_path(&person_id).await {
            Ok(path) => path,
            Err(error) => {
                return Err(caller
                    .hide_missing(Object::LearnerRecord, "person", &person_id, error)
                    .into());
            }
        };
        if !caller.allows(
            Object::LearnerRecord,
            &Owner::person(person_id.clone(), path),
        ) {
            // Trainers reach the learners of the cohorts they train: any enrolment of the person
            // in one of them will do.
            let enrollment_ids = self.store.enrollment_ids_of_person(&person_id).await?;
            let owners = self.store.enrollment_owners(&enrollment_ids).await?;
            if !owners
                .values()
                .any(|owner| caller.allows(Object::LearnerRecord, &owner.owner()))
            {
                return Err(scope::out_of_scope("person", &person_id).into());
            }
        }
        let role = match &role_id {
            Some(role_id) => Some(self.store.get_role(role_id).await?),
            None => None,
        };
        let evidence = self
            .store
            .competency_evidence(&person_id, crate::domain::now())
            .await?;
        let held = fold_profile(evidence);
        let mut ids: Vec<String> = held.iter().map(|held| held.competency_id.clone()).collect();
        let mut gaps_proto = Vec::new();
        if let Some(role) = &role {
            ids.extend(
                role.requirements
                    .iter()
                    .map(|requirement| requirement.competency_id.clone()),
            );
            let builders = self.builders_of(role).await?;
            for gap in gaps(&role.requirements, &held) {
                let suggested = if gap.met {
                    Vec::new()
                } else {
                    builders
                        .get(&gap.competency_id)
                        .map(|tags| {
                            tags.iter()
                                .filter(|tag| tag.level >= gap.required_level)
                                .map(builder_to_proto)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                gaps_proto.push(pb::CompetencyGap {
                    competency_id: gap.competency_id,
                    required_level: gap.required_level,
                    held_level: gap.held_level,
                    met: gap.met,
                    builders: suggested,
                });
            }
        }
        ids.sort();
        ids.dedup();
        let competencies = self.store.competencies_by_id(&ids).await?;
        let mut held_proto: Vec<pb::HeldCompetency> = held
            .into_iter()
            .map(
                |Held {
                     competency_id,
                     level,
                     evidence,
                 }| {
                    let competency = competencies.get(&competency_id);
                    pb::HeldCompetency {
                        code: competency.map(|c| c.code.clone()).unwrap_or_default(),
                        name: competency.map(|c| c.name.clone()).unwrap_or_default(),
                        level_name: competency
                            .map(|c| c.level_name(level).to_owned())
                            .unwrap_or_default(),
                        competency_id,
                        level,
                        evidence: evidence.into_iter().map(evidence_to_proto).collect(),
                    }
                },
            )
            .collect();
        held_proto.sort_by(|left, right| left.code.cmp(&right.code));
        Ok(Response::new(pb::CompetencyProfile {
            person_id,
            competencies: held_proto,
            role_id: role_id.unwrap_or_default(),
            gaps: gaps_proto,
        }))
    }

    async fn search_competency_holders(
        &self,
        request: Request<pb::SearchCompetencyHoldersRequest>,
    ) -> Result<Response<pb::SearchCompetencyHoldersResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let competency_id = required_id("competency_id", &message.competency_id)?;
        if message.min_level < 0 {
            return Err(Error::invalid("min_level", "must not be negative").into());
        }
        let min_level = message.min_level.max(1);
        let subtree = optional_id_or_error("organization_subtree", &message.organization_subtree)?;
        let filters = format!(
            "competency={competency_id};level={min_level};subtree={}",
            message.organization_subtree
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let caller = scope::list_caller(&self.store, &context, Object::Report).await?;
        let requested = match subtree {
            Some(root) => Some(self.store.get_organization(&root).await?.path),
            None => None,
        };
        if let Some(path) = &requested {
            caller.check_subtree(Object::Report, path)?;
        }
        let organization_path_prefix = match caller.visibility(Object::Report) {
            None => requested,
            Some(visible) => match (requested, visible.organization_path_prefix) {
                (Some(path), _) => Some(path),
                (None, Some(own)) => Some(own),
                (None, None) => {
                    return Err(Error::permission_denied(
                        Reason::CompetencySearchNotAllowed,
                        "the holder search is for managers of the organisations concerned",
                    )
                    .into());
                }
            },
        };
        let competency = self.store.get_competency(&competency_id).await?;
        if min_level > competency.max_level() {
            return Err(Error::invalid(
                "min_level",
                format!(
                    "competency {} has levels 1 to {}",
                    competency.code,
                    competency.max_level()
                ),
            )
            .into());
        }
        let filter = HolderFilter {
            competency_id,
            min_level,
            organization_path_prefix,
        };
        let (holders, next_page_token) = self
            .store
            .search_competency_holders(&filter, &page, crate::domain::now())
            .await?;
        Ok(Response::new(pb::SearchCompetencyHoldersResponse {
            holders: holders
                .into_iter()
                .map(|holder| pb::CompetencyHolder {
                    person_id: holder.person_id,
                    external_id: holder.external_id,
                    full_name: holder.full_name,
                    organization_id: holder.organization_id,
                    level: holder.level,
                })
                .collect(),
            next_page_token,
        }))
    }
}

impl CompetencyApi {
    /// Returns the targets that build each requirement of `role`.
    async fn builders_of(&self, role: &Role) -> Result<HashMap<String, Vec<TargetTag>>> {
        let wanted: Vec<(String, i32)> = role
            .requirements
            .iter()
            .map(|requirement| (requirement.competency_id.clone(), requirement.level))
            .collect();
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        self.store.competency_builders(&wanted).await
    }
}
