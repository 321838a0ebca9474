// The cases' map in the operator console: the filtered cases (the list's filters, as compact GeoJSON) as markers,
// each linking to its case; tiles when a tile server is configured.
(function () {
  "use strict";
  var box = document.getElementById("map");
  if (!box || !window.L) { return; }
  var map = window.L.map(box, { attributionControl: false });
  if (box.dataset.tiles) {
    window.L.control.attribution({ prefix: false }).addAttribution("© OpenStreetMap").addTo(map);
    window.L.tileLayer(box.dataset.tiles, { maxZoom: 19 }).addTo(map);
  }
  map.setView([20, 0], 2);
  fetch(box.dataset.geojson, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (doc) {
    var layer = window.L.geoJSON(doc, {
      pointToLayer: function (feature, at) {
        var p = feature.properties;
        var colour = p.status === "resolved" ? "#5f6b6d" : (p.breached ? "#c0392b" : "#1f5fbf");
        return window.L.circleMarker(at, { radius: 7, color: colour, weight: 2, fillOpacity: 0.6,
                                           className: "case-marker" });
      },
      onEachFeature: function (feature, marker) {
        var p = feature.properties;
        var link = document.createElement("a");
        link.href = box.dataset.base + "/cases/" + p.case_id;
        link.textContent = "#" + p.case_id + " " + p.asset_id;
        marker.bindPopup(link);
      }
    }).addTo(map);
    if (layer.getLayers().length) { map.fitBounds(layer.getBounds(), { padding: [20, 20], maxZoom: 17 }); }
    box.dataset.markers = String(layer.getLayers().length);
  });
}());
