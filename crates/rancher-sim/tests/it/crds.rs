//! CustomResourceDefinitions: kubectl applies a CRD, then custom resources of it (get, printer
//! columns, delete), and discovery / explain know the new kind.

use crate::common::*;

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: The widget's wishes.
            properties:
              size: {type: integer, description: How big the widget is.}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_round_trip() {
    let sim = start_sim(1).await;
    let (_d, crd) = manifest(CRD);
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        k.ok(&["apply", "-f", &crd]).await;
        let name = format!("w{}", v.replace('.', ""));
        let (_d2, w) = manifest(&format!(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {{size: 7}}\n"
        ));
        assert!(k.ok(&["apply", "-f", &w]).await.contains(&format!("widget.example.com/{name}")));
        let got = k.ok(&["get", "wd", &name]).await;
        assert!(got.contains("SIZE") && got.contains('7'), "{got}");
        let explained = k.ok(&["explain", "widget.spec.size"]).await;
        assert!(explained.contains("How big the widget is"), "{explained}");
        k.ok(&["delete", "widget", &name]).await;
        assert!(!k.run(&["get", "widget", &name]).await.ok);
    }
}
