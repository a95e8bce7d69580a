//! `lms.v1.CourseService`: the catalogue.

use tonic::{Request, Response, Status};

use crate::auth;
use crate::domain::{
    course::{
        Activity, ActivityField, ActivityKind, ActivityPatch, ActivityRule, ActivityValues,
        CompletionRule, Course, CourseField, CoursePatch, CourseState, CourseVersion, DeliveryMode,
        DraftAccess, Module, ModuleField, ModulePatch, ModuleRule, ModuleValues, NewCourse,
        RawActivity, VersionState, parse_course_query,
    },
    field_mask,
    organization::{optional_id_or_error, required_id},
    page::Page,
    survey::RawQuestion,
};
use crate::error::{Error, Result};
use crate::pb;
use crate::store::{Store, course::CourseFilter};

/// Handlers of `CourseService`.
#[derive(Clone)]
pub struct CourseApi {
    store: Store,
}

impl CourseApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn course_state_from_proto(state: i32) -> Option<CourseState> {
    match pb::CourseState::try_from(state).ok()? {
        pb::CourseState::Unspecified => None,
        pb::CourseState::Draft => Some(CourseState::Draft),
        pb::CourseState::Published => Some(CourseState::Published),
        pb::CourseState::Archived => Some(CourseState::Archived),
    }
}

fn course_state_to_proto(state: CourseState) -> pb::CourseState {
    match state {
        CourseState::Draft => pb::CourseState::Draft,
        CourseState::Published => pb::CourseState::Published,
        CourseState::Archived => pb::CourseState::Archived,
    }
}

fn version_state_from_proto(state: i32) -> Option<VersionState> {
    match pb::CourseVersionState::try_from(state).ok()? {
        pb::CourseVersionState::Unspecified => None,
        pb::CourseVersionState::Draft => Some(VersionState::Draft),
        pb::CourseVersionState::Published => Some(VersionState::Published),
    }
}

fn version_state_to_proto(state: VersionState) -> pb::CourseVersionState {
    match state {
        VersionState::Draft => pb::CourseVersionState::Draft,
        VersionState::Published => pb::CourseVersionState::Published,
    }
}

fn activity_kind_from_proto(kind: i32) -> Option<ActivityKind> {
    use pb::ActivityKind as Kind;
    match Kind::try_from(kind).ok()? {
        Kind::Unspecified => None,
        Kind::Lecture => Some(ActivityKind::Lecture),
        Kind::Lab => Some(ActivityKind::Lab),
        Kind::Simulation => Some(ActivityKind::Simulation),
        Kind::FieldVisit => Some(ActivityKind::FieldVisit),
        Kind::CaseStudy => Some(ActivityKind::CaseStudy),
        Kind::Workshop => Some(ActivityKind::Workshop),
        Kind::IndustryAttachment => Some(ActivityKind::IndustryAttachment),
        Kind::Assessment => Some(ActivityKind::Assessment),
        Kind::Survey => Some(ActivityKind::Survey),
        Kind::SelfStudy => Some(ActivityKind::SelfStudy),
    }
}

fn activity_kind_to_proto(kind: ActivityKind) -> pb::ActivityKind {
    use pb::ActivityKind as Kind;
    match kind {
        ActivityKind::Lecture => Kind::Lecture,
        ActivityKind::Lab => Kind::Lab,
        ActivityKind::Simulation => Kind::Simulation,
        ActivityKind::FieldVisit => Kind::FieldVisit,
        ActivityKind::CaseStudy => Kind::CaseStudy,
        ActivityKind::Workshop => Kind::Workshop,
        ActivityKind::IndustryAttachment => Kind::IndustryAttachment,
        ActivityKind::Assessment => Kind::Assessment,
        ActivityKind::Survey => Kind::Survey,
        ActivityKind::SelfStudy => Kind::SelfStudy,
    }
}

fn delivery_mode_from_proto(mode: i32) -> Option<DeliveryMode> {
    match pb::DeliveryMode::try_from(mode).ok()? {
        pb::DeliveryMode::Unspecified => None,
        pb::DeliveryMode::Online => Some(DeliveryMode::Online),
        pb::DeliveryMode::InPerson => Some(DeliveryMode::InPerson),
        pb::DeliveryMode::Blended => Some(DeliveryMode::Blended),
    }
}

fn delivery_mode_to_proto(mode: DeliveryMode) -> pb::DeliveryMode {
    match mode {
        DeliveryMode::Online => pb::DeliveryMode::Online,
        DeliveryMode::InPerson => pb::DeliveryMode::InPerson,
        DeliveryMode::Blended => pb::DeliveryMode::Blended,
    }
}

/// Parses an optional enum filter: 0 means none, an unknown value is INVALID_ARGUMENT on `field`.
fn optional_filter<T>(
    field: &str,
    value: i32,
    parse: impl Fn(i32) -> Option<T>,
) -> Result<Option<T>> {
    if value == 0 {
        return Ok(None);
    }
    parse(value)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is not a known value"))
}

/// Returns the activity fields of a request, before validation (`questions` are its
/// `survey_questions`, converted by [`super::survey::raw_questions`]).
fn raw_activity<'a>(activity: &'a pb::Activity, questions: &'a [RawQuestion]) -> RawActivity<'a> {
    RawActivity {
        title: &activity.title,
        kind: activity_kind_from_proto(activity.kind),
        required: activity.required,
        delivery_mode: delivery_mode_from_proto(activity.delivery_mode),
        expected_minutes: activity.expected_minutes,
        pass_score: activity.pass_score,
        host_organization_id: &activity.host_organization_id,
        survey_questions: questions,
    }
}

impl From<Course> for pb::Course {
    fn from(course: Course) -> Self {
        Self {
            id: course.id,
            code: course.code,
            title: course.values.title,
            description: course.values.description,
            provider_organization_id: course.values.provider_organization_id,
            state: course_state_to_proto(course.state).into(),
            latest_version: course.latest_version,
            latest_version_id: course.latest_version_id.unwrap_or_default(),
            etag: crate::domain::etag(course.revision),
            create_time: Some(super::timestamp(course.create_time)),
            update_time: Some(super::timestamp(course.update_time)),
        }
    }
}

impl From<CourseVersion> for pb::CourseVersion {
    fn from(version: CourseVersion) -> Self {
        Self {
            id: version.id,
            course_id: version.course_id,
            version: version.version,
            state: version_state_to_proto(version.state).into(),
            modules: version.modules.into_iter().map(Into::into).collect(),
            completion_rule: version.completion_rule.map(Into::into),
            copied_from_version_id: version.copied_from_version_id.unwrap_or_default(),
            etag: crate::domain::etag(version.revision),
            create_time: Some(super::timestamp(version.create_time)),
            update_time: Some(super::timestamp(version.update_time)),
            publish_time: version.publish_time.map(super::timestamp),
        }
    }
}

impl From<Module> for pb::Module {
    fn from(module: Module) -> Self {
        Self {
            id: module.id,
            course_version_id: module.course_version_id,
            title: module.values.title,
            position: module.position,
            required: module.values.required,
            prerequisite_module_ids: module.values.prerequisite_module_ids,
            activities: module.activities.into_iter().map(Into::into).collect(),
            etag: crate::domain::etag(module.revision),
            create_time: Some(super::timestamp(module.create_time)),
            update_time: Some(super::timestamp(module.update_time)),
        }
    }
}

impl From<Activity> for pb::Activity {
    fn from(activity: Activity) -> Self {
        let requires_sign_off = activity.requires_sign_off();
        let values = activity.values;
        Self {
            id: activity.id,
            module_id: activity.module_id,
            title: values.title,
            kind: activity_kind_to_proto(values.kind).into(),
            position: activity.position,
            required: values.required,
            delivery_mode: delivery_mode_to_proto(values.delivery_mode).into(),
            expected_minutes: values.expected_minutes,
            pass_score: values.pass_score,
            host_organization_id: values.host_organization_id.unwrap_or_default(),
            survey_questions: super::survey::questions_to_proto(values.survey_questions),
            requires_sign_off,
            etag: crate::domain::etag(activity.revision),
            create_time: Some(super::timestamp(activity.create_time)),
            update_time: Some(super::timestamp(activity.update_time)),
        }
    }
}

impl From<CompletionRule> for pb::CompletionRule {
    fn from(rule: CompletionRule) -> Self {
        Self {
            modules: rule.modules.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<ModuleRule> for pb::ModuleRule {
    fn from(rule: ModuleRule) -> Self {
        Self {
            module_id: rule.module_id,
            required: rule.required,
            prerequisite_module_ids: rule.prerequisite_module_ids,
            activities: rule.activities.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<ActivityRule> for pb::ActivityRule {
    fn from(rule: ActivityRule) -> Self {
        Self {
            activity_id: rule.activity_id,
            required: rule.required,
            kind: activity_kind_to_proto(rule.kind).into(),
            pass_score: rule.pass_score,
            requires_sign_off: rule.requires_sign_off,
        }
    }
}

#[tonic::async_trait]
impl pb::course_service_server::CourseService for CourseApi {
    async fn create_course(
        &self,
        request: Request<pb::CreateCourseRequest>,
    ) -> Result<Response<pb::Course>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let course = message
            .course
            .ok_or_else(|| Error::invalid("course", "is required"))?;
        let new = NewCourse::parse(
            "course",
            &course.code,
            &course.title,
            &course.description,
            &course.provider_organization_id,
        )?;
        let created = self
            .store
            .create_course(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                new,
                key,
            )
            .await?;
        tracing::info!(course = %created.id, code = %created.code, "course created");
        Ok(Response::new(created.into()))
    }

    async fn get_course(
        &self,
        request: Request<pb::GetCourseRequest>,
    ) -> Result<Response<pb::Course>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get_course(&id).await?.into()))
    }

    async fn list_courses(
        &self,
        request: Request<pb::ListCoursesRequest>,
    ) -> Result<Response<pb::ListCoursesResponse>, Status> {
        let message = request.into_inner();
        let state = optional_filter("state", message.state, course_state_from_proto)?;
        let provider_organization_id = optional_id_or_error(
            "provider_organization_id",
            &message.provider_organization_id,
        )?;
        let query = parse_course_query("query", &message.query)?;
        let filters = format!(
            "state={};provider={};query={}",
            message.state, message.provider_organization_id, message.query
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let filter = CourseFilter {
            state,
            provider_organization_id,
            query,
        };
        let (courses, next_page_token) = self.store.list_courses(&filter, &page).await?;
        Ok(Response::new(pb::ListCoursesResponse {
            courses: courses.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn update_course(
        &self,
        request: Request<pb::UpdateCourseRequest>,
    ) -> Result<Response<pb::Course>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let course = message
            .course
            .ok_or_else(|| Error::invalid("course", "is required"))?;
        let id = required_id("course.id", &course.id)?;
        let paths = super::mask_paths(message.update_mask);
        let fields = field_mask::resolve(
            &paths,
            CourseField::parse,
            &CourseField::OUTPUT_ONLY,
            &CourseField::ALL,
            |field| match field {
                CourseField::Title => !course.title.is_empty(),
                CourseField::Description => !course.description.is_empty(),
                CourseField::ProviderOrganizationId => !course.provider_organization_id.is_empty(),
            },
        )?;
        let patch = CoursePatch::parse(
            "course",
            &fields,
            &course.title,
            &course.description,
            &course.provider_organization_id,
        )?;
        let expected_revision = super::expected_revision("course.etag", &course.etag)?;
        let updated = self
            .store
            .update_course(context.audit(None), id, patch, expected_revision)
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn archive_course(
        &self,
        request: Request<pb::ArchiveCourseRequest>,
    ) -> Result<Response<pb::Course>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let archived = self
            .store
            .archive_course(context.audit(None), id, expected_revision)
            .await?;
        tracing::info!(course = %archived.id, "course archived");
        Ok(Response::new(archived.into()))
    }

    async fn create_course_version(
        &self,
        request: Request<pb::CreateCourseVersionRequest>,
    ) -> Result<Response<pb::CourseVersion>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let course_id = required_id("course_id", &message.course_id)?;
        let copy_from_version_id =
            optional_id_or_error("copy_from_version_id", &message.copy_from_version_id)?;
        let created = self
            .store
            .create_course_version(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                course_id,
                copy_from_version_id,
                key,
            )
            .await?;
        tracing::info!(
            course = %created.course_id,
            version = created.version,
            "course version created"
        );
        Ok(Response::new(created.into()))
    }

    async fn get_course_version(
        &self,
        request: Request<pb::GetCourseVersionRequest>,
    ) -> Result<Response<pb::CourseVersion>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        let version = self.store.get_course_version(&id).await?;
        DraftAccess::of(&context.principal.roles).check(&version)?;
        Ok(Response::new(version.into()))
    }

    async fn list_course_versions(
        &self,
        request: Request<pb::ListCourseVersionsRequest>,
    ) -> Result<Response<pb::ListCourseVersionsResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let course_id = required_id("course_id", &message.course_id)?;
        let state = optional_filter("state", message.state, version_state_from_proto)?;
        let filters = format!("course={};state={}", message.course_id, message.state);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let states = DraftAccess::of(&context.principal.roles).listable_states(state);
        let (versions, next_page_token) = self
            .store
            .list_course_versions(&course_id, &states, &page)
            .await?;
        Ok(Response::new(pb::ListCourseVersionsResponse {
            course_versions: versions.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn publish_course_version(
        &self,
        request: Request<pb::PublishCourseVersionRequest>,
    ) -> Result<Response<pb::CourseVersion>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let published = self
            .store
            .publish_course_version(context.audit(None), id, expected_revision)
            .await?;
        tracing::info!(
            course = %published.course_id,
            version = published.version,
            "course version published"
        );
        Ok(Response::new(published.into()))
    }

    async fn create_module(
        &self,
        request: Request<pb::CreateModuleRequest>,
    ) -> Result<Response<pb::Module>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let version_id = required_id("course_version_id", &message.course_version_id)?;
        let module = message
            .module
            .ok_or_else(|| Error::invalid("module", "is required"))?;
        let values = ModuleValues::parse(
            "module",
            &module.title,
            module.required,
            &module.prerequisite_module_ids,
        )?;
        let created = self
            .store
            .create_module(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                version_id,
                values,
                key,
            )
            .await?;
        Ok(Response::new(created.into()))
    }

    async fn update_module(
        &self,
        request: Request<pb::UpdateModuleRequest>,
    ) -> Result<Response<pb::Module>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let module = message
            .module
            .ok_or_else(|| Error::invalid("module", "is required"))?;
        let id = required_id("module.id", &module.id)?;
        let paths = super::mask_paths(message.update_mask);
        let fields = field_mask::resolve(
            &paths,
            ModuleField::parse,
            &ModuleField::OUTPUT_ONLY,
            &ModuleField::ALL,
            |field| match field {
                ModuleField::Title => !module.title.is_empty(),
                ModuleField::Required => module.required,
                ModuleField::PrerequisiteModuleIds => !module.prerequisite_module_ids.is_empty(),
            },
        )?;
        let patch = ModulePatch::parse(
            "module",
            &fields,
            &module.title,
            module.required,
            &module.prerequisite_module_ids,
        )?;
        let expected_revision = super::expected_revision("module.etag", &module.etag)?;
        let updated = self
            .store
            .update_module(context.audit(None), id, patch, expected_revision)
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn delete_module(
        &self,
        request: Request<pb::DeleteModuleRequest>,
    ) -> Result<Response<()>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        self.store
            .delete_module(context.audit(None), id, expected_revision)
            .await?;
        Ok(Response::new(()))
    }

    async fn reorder_modules(
        &self,
        request: Request<pb::ReorderModulesRequest>,
    ) -> Result<Response<pb::CourseVersion>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let version_id = required_id("course_version_id", &message.course_version_id)?;
        let reordered = self
            .store
            .reorder_modules(context.audit(None), version_id, message.module_ids)
            .await?;
        Ok(Response::new(reordered.into()))
    }

    async fn create_activity(
        &self,
        request: Request<pb::CreateActivityRequest>,
    ) -> Result<Response<pb::Activity>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let module_id = required_id("module_id", &message.module_id)?;
        let activity = message
            .activity
            .ok_or_else(|| Error::invalid("activity", "is required"))?;
        let questions = super::survey::raw_questions(&activity.survey_questions);
        let values = ActivityValues::parse("activity", &raw_activity(&activity, &questions))?;
        let created = self
            .store
            .create_activity(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                module_id,
                values,
                key,
            )
            .await?;
        Ok(Response::new(created.into()))
    }

    async fn update_activity(
        &self,
        request: Request<pb::UpdateActivityRequest>,
    ) -> Result<Response<pb::Activity>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let activity = message
            .activity
            .ok_or_else(|| Error::invalid("activity", "is required"))?;
        let id = required_id("activity.id", &activity.id)?;
        let paths = super::mask_paths(message.update_mask);
        let fields = field_mask::resolve(
            &paths,
            ActivityField::parse,
            &ActivityField::OUTPUT_ONLY,
            &ActivityField::ALL,
            |field| match field {
                ActivityField::Title => !activity.title.is_empty(),
                ActivityField::Kind => activity.kind != 0,
                ActivityField::Required => activity.required,
                ActivityField::DeliveryMode => activity.delivery_mode != 0,
                ActivityField::ExpectedMinutes => activity.expected_minutes != 0,
                ActivityField::PassScore => activity.pass_score.is_some(),
                ActivityField::HostOrganizationId => !activity.host_organization_id.is_empty(),
                ActivityField::SurveyQuestions => !activity.survey_questions.is_empty(),
            },
        )?;
        let questions = super::survey::raw_questions(&activity.survey_questions);
        let patch =
            ActivityPatch::parse("activity", &fields, &raw_activity(&activity, &questions))?;
        let expected_revision = super::expected_revision("activity.etag", &activity.etag)?;
        let updated = self
            .store
            .update_activity(context.audit(None), id, patch, expected_revision)
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn delete_activity(
        &self,
        request: Request<pb::DeleteActivityRequest>,
    ) -> Result<Response<()>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        self.store
            .delete_activity(context.audit(None), id, expected_revision)
            .await?;
        Ok(Response::new(()))
    }

    async fn reorder_activities(
        &self,
        request: Request<pb::ReorderActivitiesRequest>,
    ) -> Result<Response<pb::Module>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let module_id = required_id("module_id", &message.module_id)?;
        let reordered = self
            .store
            .reorder_activities(context.audit(None), module_id, message.activity_ids)
            .await?;
        Ok(Response::new(reordered.into()))
    }
}
