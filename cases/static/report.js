// The citizens' report page: a map to tap (Leaflet, when installed; tiles when a tile server is configured),
// "use my position", and a check of the number of photos before sending. Without it the page works with its
// coordinate and address fields.
(function () {
  "use strict";
  var body = document.body;
  var lat = document.getElementById("lat");
  var lon = document.getElementById("lon");
  var box = document.getElementById("map");
  var marker = null;
  var map = null;

  function place(la, lo, move) {
    lat.value = la.toFixed(6);
    lon.value = lo.toFixed(6);
    if (!map) { return; }
    if (marker) { marker.setLatLng([la, lo]); } else { marker = window.L.marker([la, lo]).addTo(map); }
    if (move) { map.setView([la, lo], 18); }
  }

  if (window.L && box) {
    var la = parseFloat(box.dataset.lat), lo = parseFloat(box.dataset.lon);
    var known = !isNaN(la) && !isNaN(lo);
    map = window.L.map(box, { zoomControl: true, attributionControl: false })
      .setView(known ? [la, lo] : [20, 0], known ? 14 : 2);
    if (box.dataset.tiles) {
      // the tiles' attribution as plain text (no tiny links to miss with a finger)
      window.L.control.attribution({ prefix: false }).addAttribution("© OpenStreetMap").addTo(map);
      window.L.tileLayer(box.dataset.tiles, { maxZoom: 19 }).addTo(map);
    }
    map.on("click", function (e) { place(e.latlng.lat, e.latlng.lng, false); });
    if (lat.value && lon.value) { place(parseFloat(lat.value), parseFloat(lon.value), true); }
  } else if (box) {
    box.hidden = true;
  }

  var locate = document.getElementById("locate");
  var failed = document.getElementById("locate-failed");
  if (!navigator.geolocation) {
    locate.hidden = true;
  } else {
    locate.addEventListener("click", function () {
      failed.hidden = true;
      navigator.geolocation.getCurrentPosition(function (p) {
        place(p.coords.latitude, p.coords.longitude, true);
      }, function () {
        failed.textContent = body.dataset.positionFailed;
        failed.hidden = false;
      }, { enableHighAccuracy: true, timeout: 15000 });
    });
  }

  var form = document.getElementById("report");
  var photo = document.getElementById("photo");
  var photoProblem = document.getElementById("photo-problem");
  form.addEventListener("submit", function (event) {
    var max = parseInt(body.dataset.maxPhotos, 10);
    if (photo.files && photo.files.length > max) {
      event.preventDefault();
      photoProblem.textContent = body.dataset.tooMany;
      photoProblem.hidden = false;
      photo.focus();
    }
  });
}());
