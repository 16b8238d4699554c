from rating_pipeline.cli import main

raise SystemExit(main())
