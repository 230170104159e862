"""Real browser: move the φ slider on the Scaling page and see the parameter count change."""

from playwright.sync_api import expect

from core.models import scaling


def test_moving_phi_changes_parameter_count(app_url, page, tmp_path):
    page.goto(app_url + "/scaling")
    params = (
        page.get_by_test_id("stMetric")
        .filter(has_text="Parameters")
        .get_by_test_id("stMetricValue")
    )
    expect(params).to_have_text(f"{scaling.official_network('b0').params:,}", timeout=120_000)

    slider = page.get_by_test_id("stSlider").filter(has_text="compound coefficient")
    value = slider.get_by_role("slider")  # the (visually hidden) range input holding the value
    value.focus()
    for _ in range(20):  # 20 steps of 0.05: phi = 1.0
        value.press("ArrowRight")
    expect(value).to_have_value("1")
    expect(params).to_have_text(f"{scaling.formula_network(1.0).params:,}")

    # Drag the visible thumb with the mouse past the track's right end: phi = 7.
    thumb = slider.get_by_test_id("stSliderThumbValue").locator("..").bounding_box()
    track = slider.get_by_role("group").bounding_box()
    y = thumb["y"] + thumb["height"] / 2
    page.mouse.move(thumb["x"] + thumb["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] + 40, y, steps=10)
    page.mouse.up()
    expect(value).to_have_value("7")
    expect(params).to_have_text(f"{scaling.formula_network(7.0).params:,}")
    page.screenshot(path=str(tmp_path / "scaling.png"), full_page=True)
