use super::*;
use std::time::{Duration, UNIX_EPOCH};

/// 2009-02-13T23:31:30Z.
const NOW: u64 = 1_234_567_890;

fn context() -> Arc<TemplateContext> {
    Arc::new(TemplateContext {
        build_name: "web".into(),
        build_type: "amazon-chroot".into(),
        packer_version: Some("1.11.2".into()),
        template_path: Some("/srv/templates/web.json".into()),
        user_variables: Some(BTreeMap::from([(
            "region".to_string(),
            "eu-west-1".to_string(),
        )])),
        now: UNIX_EPOCH + Duration::from_secs(NOW),
    })
}

fn now(src: &str) -> Result<String, TemplateError> {
    render_now(src, &context())
}

#[test]
fn renders_timestamp_as_unix_seconds() {
    assert_eq!(now("web-{{timestamp}}").unwrap(), "web-1234567890");
    assert_eq!(now("{{ timestamp }}").unwrap(), "1234567890");
}

#[test]
fn renders_isotime_with_go_layouts() {
    assert_eq!(now("{{isotime}}").unwrap(), "2009-02-13T23:31:30Z");
    assert_eq!(now(r#"{{isotime "2006-01-02"}}"#).unwrap(), "2009-02-13");
    assert_eq!(
        now("{{isotime `2006-01-02 15:04`}}").unwrap(),
        "2009-02-13 23:31"
    );
}

#[test]
fn renders_strftime() {
    assert_eq!(
        now(r#"{{strftime "%Y%m%d-%H%M"}}"#).unwrap(),
        "20090213-2331"
    );
}

#[test]
fn renders_user_variables_with_either_quote() {
    assert_eq!(now(r#"{{user "region"}}"#).unwrap(), "eu-west-1");
    assert_eq!(now("{{user `region`}}").unwrap(), "eu-west-1");
    assert_eq!(now("{{user `missing`}}").unwrap(), "");
}

#[test]
fn rejects_user_in_hcl2_mode() {
    let mut ctx = (*context()).clone();
    ctx.user_variables = None;
    let e = render_now("{{user `x`}}", &Arc::new(ctx)).unwrap_err();
    assert!(e.0.contains("var.x"), "{e}");
}

#[test]
fn rejects_env_in_builder_options() {
    let e = now(r#"{{env "HOME"}}"#).unwrap_err();
    assert!(e.0.contains("env vars are not allowed here"), "{e}");
}

#[test]
fn renders_build_names_and_version() {
    assert_eq!(
        now("{{build_name}}/{{build_type}}/{{packer_version}}").unwrap(),
        "web/amazon-chroot/1.11.2"
    );
    assert_eq!(now("{{template_dir}}").unwrap(), "/srv/templates");
}

#[test]
fn renders_string_functions() {
    assert_eq!(now(r#"{{upper "abc"}}{{lower "DEF"}}"#).unwrap(), "ABCdef");
    assert_eq!(now(r#"{{replace "a" "b" 1 "aaa"}}"#).unwrap(), "baa");
    assert_eq!(now(r#"{{replace "a" "b" -1 "aaa"}}"#).unwrap(), "bbb");
    assert_eq!(now(r#"{{replace_all "a" "b" "aaa"}}"#).unwrap(), "bbb");
    assert_eq!(now(r#"{{split "a-b-c" "-" 1}}"#).unwrap(), "b");
    assert!(now(r#"{{split "a-b-c" "-" 5}}"#)
        .unwrap_err()
        .0
        .contains("only 3 values"));
}

#[test]
fn cleans_resource_names() {
    assert_eq!(
        clean_resource_name("a:b*c (1) [x]/y'z@w_v.-"),
        "a-b-c (1) [x]/y'z@w_v.-"
    );
    assert_eq!(clean_resource_name("é"), "--");
    assert_eq!(now(r#"{{clean_resource_name "a:b"}}"#).unwrap(), "a-b");
}

#[test]
fn passes_pipes_as_last_argument() {
    assert_eq!(
        now("{{ timestamp | clean_resource_name }}").unwrap(),
        "1234567890"
    );
    assert_eq!(
        now(r#"{{ isotime "2006-01-02 15:04" | clean_resource_name | upper }}"#).unwrap(),
        "2009-02-13 23-31"
    );
    assert_eq!(now(r#"{{ "a,b" | replace_all "," "-" }}"#).unwrap(), "a-b");
    assert_eq!(now(r#"{{ upper (lower "AbC") }}"#).unwrap(), "ABC");
}

#[test]
fn renders_uuid_in_time_ordered_form() {
    let u = now("{{uuid}}").unwrap();
    let parts: Vec<&str> = u.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12]
    );
    assert_eq!(parts[0], format!("{:08x}", NOW));
    assert_ne!(u, now("{{uuid}}").unwrap());
}

#[test]
fn trims_whitespace_around_dash_delimiters_and_drops_comments() {
    assert_eq!(now("a  {{- timestamp -}}  b").unwrap(), "a1234567890b");
    assert_eq!(now("a{{/* note */}}b").unwrap(), "ab");
}

#[test]
fn rejects_syntax_errors() {
    for bad in [
        "foo {{",
        "{{ timestamp",
        "{{ nosuch }}",
        r#"{{ "a" "b" }}"#,
        "{{ if true }}x{{ end }}",
        "{{ upper }}",
    ] {
        assert!(now(bad).is_err(), "{bad} should fail");
    }
    assert_eq!(
        now("{{ upper }}").unwrap_err().0,
        "wrong number of args for upper: want 1 got 0"
    );
    assert_eq!(
        now("{{ nosuch }}").unwrap_err().0,
        "function \"nosuch\" not defined"
    );
}

#[test]
fn rejects_data_fields_at_prepare() {
    let e = now("{{.SourceAMIName}}").unwrap_err();
    assert!(e.0.contains("rendered at Prepare"), "{e}");
}

#[test]
fn renders_data_fields_late() {
    let t = Template::parse("sudo {{.Command}}", fields::COMMAND, context()).unwrap();
    let data = TemplateData {
        command: Some("mount /dev/xvdf /mnt".into()),
        ..Default::default()
    };
    assert_eq!(t.render(&data).unwrap(), "sudo mount /dev/xvdf /mnt");
    assert!(t
        .render(&TemplateData::default())
        .unwrap_err()
        .0
        .contains(".Command has no value"));
}

#[test]
fn rejects_fields_the_option_does_not_have() {
    let e = Template::parse("{{.MountPath}}", fields::DEVICE, context()).unwrap_err();
    assert_eq!(e.0, ".MountPath is not available here (available: .Device)");
}

#[test]
fn renders_build_info_and_source_ami_tags() {
    let t = Template::parse(
        r#"{{.SourceAMIName}} in {{.BuildRegion}} ({{.SourceAMITags.os}}, {{index .SourceAMITags "a b"}}, {{.SourceAMITags.none}})"#,
        fields::BUILD_INFO,
        context(),
    )
    .unwrap();
    let data = TemplateData {
        build_info: Some(BuildInfo {
            build_region: "us-east-1".into(),
            source_ami_name: "debian-12".into(),
            source_ami_tags: BTreeMap::from([
                ("os".to_string(), "debian".to_string()),
                ("a b".to_string(), "spaced".to_string()),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        t.render(&data).unwrap(),
        "debian-12 in us-east-1 (debian, spaced, <no value>)"
    );
}

#[test]
fn renders_functions_in_late_templates_too() {
    let t = Template::parse("{{.Device}}-{{timestamp}}", fields::DEVICE, context()).unwrap();
    let data = TemplateData {
        device: Some("xvdf".into()),
        ..Default::default()
    };
    assert_eq!(t.render(&data).unwrap(), "xvdf-1234567890");
}
