//! The progress read cache: repeated reads are served from memory, every write is seen by the
//! next read on the replica that made it, other replicas drop what a write changed when its
//! notification arrives (PostgreSQL), owners are checked on every hit, and a person moving
//! organisation changes who may read at once.

use std::time::{Duration, Instant};

use lms::auth::Role;
use lms::pb::{self, OrganizationKind, ProgressSource as Source, ProgressVerb as Verb};
use tonic::Code;

use crate::helpers::{TestApp, TestDatabase, spawn_app_with, test_config, with_token};
use crate::metrics::{sample, scrape};
use crate::progress::{classroom, event, progress};

/// Returns the cache's count of `result` for `kind` at the server `app`.
async fn cache_count(app: &TestApp, kind: &str, result: &str) -> f64 {
    let text = scrape(app.metrics_addr.expect("metrics on")).await;
    sample(
        &text,
        "lms_progress_cache_requests_total",
        &[("kind", kind), ("result", result)],
    )
}

async fn read(
    app: &TestApp,
    token: &str,
    enrollment_id: &str,
) -> Result<pb::EnrollmentProgress, tonic::Status> {
    progress(app)
        .get_enrollment_progress(with_token(
            pb::GetEnrollmentProgressRequest {
                enrollment_id: enrollment_id.to_owned(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn cohort_page(app: &TestApp, cohort_id: &str) -> pb::ListProgressResponse {
    progress(app)
        .list_progress(app.admin(pb::ListProgressRequest {
            cohort_id: cohort_id.to_owned(),
            page_size: 50,
            order_by: "percent_complete desc".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
}

/// Reads `enrollment_id` on `app` until the cache serves it: on PostgreSQL the cache serves only
/// once the replica's listener has subscribed, which happens in the background after start.
async fn until_served_from_cache(app: &TestApp, enrollment_id: &str) -> pb::EnrollmentProgress {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = cache_count(app, "enrollment", "hit").await;
        let answer = read(app, &app.admin_token(), enrollment_id).await.unwrap();
        if cache_count(app, "enrollment", "hit").await > hits {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never served a repeated read"
        );
        tokio::task::yield_now().await;
    }
}

async fn spawn(database: &TestDatabase) -> TestApp {
    let mut config = test_config(database);
    config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    spawn_app_with(config).await
}

#[tokio::test]
async fn cached_progress_follows_every_write_and_every_owner_check() {
    let database = TestDatabase::fresh().await;
    let app = spawn(&database).await;
    let room = classroom(&app, 3).await;
    let (learner, enrollment) = room.learners[0].clone();
    let (other_learner, _) = room.learners[1].clone();

    // A repeated read is a hit, and answers the same.
    let first = until_served_from_cache(&app, &enrollment).await;
    assert_eq!(
        first,
        read(&app, &app.admin_token(), &enrollment).await.unwrap()
    );
    assert_eq!(first.percent_complete, 0.0);

    // The next read after a write on this replica sees it: the commit invalidated the entry.
    progress(&app)
        .record_progress(app.admin(pb::RecordProgressRequest {
            event: Some(event(
                &enrollment,
                &room.lecture,
                Verb::Completed,
                None,
                Source::App,
                5,
            )),
        }))
        .await
        .unwrap();
    let after = read(&app, &app.admin_token(), &enrollment).await.unwrap();
    assert!(
        after.percent_complete > 0.0,
        "a cached answer hid the write: {after:?}"
    );
    assert_eq!(after.event_count, 1);

    // The cohort list too: a cached page, then a write, then the page shows it.
    let page = cohort_page(&app, &room.cohort_id).await;
    let hits = cache_count(&app, "cohort_page", "hit").await;
    assert_eq!(cohort_page(&app, &room.cohort_id).await, page);
    assert!(
        cache_count(&app, "cohort_page", "hit").await > hits,
        "the page was not cached"
    );
    let (_, second_enrollment) = room.learners[2].clone();
    progress(&app)
        .record_progress(app.admin(pb::RecordProgressRequest {
            event: Some(event(
                &second_enrollment,
                &room.lecture,
                Verb::Completed,
                None,
                Source::App,
                4,
            )),
        }))
        .await
        .unwrap();
    let page = cohort_page(&app, &room.cohort_id).await;
    let row = page
        .progress
        .iter()
        .find(|row| row.enrollment_id == second_enrollment)
        .expect("listed");
    assert!(row.percent_complete > 0.0, "a cached page hid the write");

    // Owners are checked on every hit: the learner reads their own, another learner does not,
    // although the answer sits in the cache.
    until_served_from_cache(&app, &enrollment).await;
    let own = app.token(&learner, &[Role::Learner], None);
    assert_eq!(read(&app, &own, &enrollment).await.unwrap(), after);
    let stranger = app.token(&other_learner, &[Role::Learner], None);
    let refused = read(&app, &stranger, &enrollment).await.unwrap_err();
    assert!(
        matches!(refused.code(), Code::PermissionDenied | Code::NotFound),
        "{refused:?}"
    );

    // Moving the learner to another organisation changes which org admin may read, at once.
    let elsewhere = app
        .create_organization("Elsewhere", OrganizationKind::Agency, None, Some("ELSE"))
        .await;
    let provider_admin = app.token(
        "oa-prov",
        &[Role::OrgAdmin],
        Some(&room_provider(&app).await),
    );
    let elsewhere_admin = app.token("oa-else", &[Role::OrgAdmin], Some(&elsewhere.id));
    assert!(read(&app, &provider_admin, &enrollment).await.is_ok());
    assert!(read(&app, &elsewhere_admin, &enrollment).await.is_err());
    let person = app
        .people
        .clone()
        .get_person(app.admin(pb::GetPersonRequest {
            id: learner.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    app.people
        .clone()
        .update_person(app.admin(pb::UpdatePersonRequest {
            person: Some(pb::Person {
                id: learner.clone(),
                organization_id: elsewhere.id.clone(),
                etag: person.etag,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["organization_id".to_owned()],
            }),
        }))
        .await
        .unwrap();
    let refused = read(&app, &provider_admin, &enrollment).await.unwrap_err();
    assert!(
        matches!(refused.code(), Code::PermissionDenied | Code::NotFound),
        "the old org admin still read a moved learner: {refused:?}"
    );
    assert_eq!(
        read(&app, &elsewhere_admin, &enrollment)
            .await
            .unwrap()
            .enrollment_id,
        enrollment
    );
    app.stop().await;
}

/// The provider organisation of the classroom (its learners' organisation).
async fn room_provider(app: &TestApp) -> String {
    app.organizations
        .clone()
        .list_organizations(app.admin(pb::ListOrganizationsRequest {
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .organizations
        .into_iter()
        .find(|organization| organization.external_code == "PROV")
        .expect("the provider")
        .id
}

#[tokio::test]
async fn another_replica_drops_what_a_write_changed_when_its_notification_arrives() {
    let database = TestDatabase::fresh().await;
    if !database.url.starts_with("postgres") {
        // SQLite is one server: the test above covers its only replica.
        return;
    }
    let writer = spawn(&database).await;
    let reader = spawn(&database).await;
    let room = classroom(&writer, 2).await;
    let (_, enrollment) = room.learners[0].clone();
    let cached = until_served_from_cache(&reader, &enrollment).await;
    assert_eq!(cached.event_count, 0);

    progress(&writer)
        .record_progress(writer.admin(pb::RecordProgressRequest {
            event: Some(event(
                &enrollment,
                &room.lecture,
                Verb::Completed,
                None,
                Source::App,
                5,
            )),
        }))
        .await
        .unwrap();
    // A read carrying a commit position bypasses the cache: read-your-writes on any replica.
    let mut request = reader.admin(pb::GetEnrollmentProgressRequest {
        enrollment_id: enrollment.clone(),
    });
    request
        .metadata_mut()
        .insert("lms-min-lsn", "0/1".parse().unwrap());
    let bypassed = progress(&reader)
        .get_enrollment_progress(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        bypassed.event_count, 1,
        "a read with a commit position was served from the cache"
    );
    // Without one, the other replica sees the write once the notification arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = Instant::now();
    loop {
        let seen = read(&reader, &reader.admin_token(), &enrollment)
            .await
            .unwrap();
        if seen.event_count == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other replica kept serving the stale answer"
        );
        tokio::task::yield_now().await;
    }
    eprintln!("other replica saw the write after {:?}", started.elapsed());
    writer.stop().await;
    reader.stop().await;
}
